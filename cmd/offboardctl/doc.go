// Command offboardctl is the operators' command line for the offboarding
// worker: pause and resume a tenant, override its budget, see its status,
// run and cancel campaigns, and retry dead letters. It needs nothing but a
// NATS connection: it keeps its state in JetStream, where every worker
// replica reads it, and never talks to Defender itself.
//
// Exit status: 0 done, 1 failed, 2 bad usage.
package main
