// Command demo runs the worker's main job end to end on this machine: an
// embedded NATS server, the Defender simulator, the worker, and a sample
// batch of requests for two tenants, printing each result as it arrives;
// then a third tenant's guards refusing devices, its budget holding
// requests until raised, a pause and resume, and a campaign. DEMO_KEEP=1
// leaves everything running until Ctrl-C.
//
// It publishes and reads as any other service would, through package
// offboard, and changes pauses and budgets through the control store as
// offboardctl does; it never imports the worker.
package main
