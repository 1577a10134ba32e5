// Package queue is the worker's side of NATS JetStream: the embedded
// server, the streams, consumers and ledger it needs, the quota journal,
// the priority fetch that the quota gates, and result and dead-letter
// publishing. The contract's names (subjects, streams, message ids) are in
// package offboard.
package queue
