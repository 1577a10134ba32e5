// Command demo runs the worker's main job end to end on this machine: an
// embedded NATS server, the Defender simulator, the worker, and a sample
// batch of requests for two tenants, printing each result as it arrives.
//
// It publishes and reads as any other service would, through package
// offboard; it never imports the worker.
package main
