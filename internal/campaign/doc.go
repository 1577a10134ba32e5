// Package campaign holds what a bulk offboarding campaign needs on both
// sides of the queue: the campaign's names (request ids, source), its CSV
// read one row at a time, the compact per-row state and report of
// offboardctl campaign run, the estimate of its end from the tenant's
// quota, and the cancellation marks in the control bucket that operators
// set and every worker replica watches.
package campaign
