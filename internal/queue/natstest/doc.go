// Package natstest runs real NATS servers with JetStream in the test's
// process: one server, or a cluster of several with routes between them,
// each of which can be shut down and restarted on its own ports and store.
package natstest
