// Package limiter keeps the Defender API quota: exact sliding windows per
// tenant and per API, and the pause a 429 imposes on a whole tenant.
//
// A call is placed in its windows at the moment its answer arrives, the
// latest moment the server could have counted it; while it is in flight it
// counts in every window. With that rule no window the server can draw ever
// holds more calls than its count, whatever the network delay.
//
// A Tenant alone keeps the quota of one process. Through a Shared, every
// replica of the worker and every restart share it: each call is entered
// in a Journal (the quota journal, stream MDE_OFFBOARD_QUOTA) before it is
// sent, expecting to follow the tenant's last entry, and a feed of the
// journal (Shared.Deliver) keeps each process's view of the others' calls
// current. Times other processes wrote get a margin for clock skew.
//
// Files: window.go (limits), limiter.go (the windows of one process),
// shared.go (the journal's view and feed), write.go (this process's
// journal writes), metrics.go.
package limiter
