// Package app wires the worker together: configuration, NATS (connected or
// embedded), the Defender clients, the HTTP endpoints, and the order in
// which they start and stop. It never touches signals, so tests can run it
// on 127.0.0.1:0 and stop it.
//
// Start brings the parts up one by one and registers, for each, a named
// cleanup; Stop runs the cleanups in reverse order under one time cap
// (lifecycle.go). The defaults the command's flags show are the constants
// in defaults.go.
package app
