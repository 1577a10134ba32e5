// Package offboard is the worker's public contract: the request publishers
// send, the result the worker answers with, the outcomes and failure codes,
// the subjects, streams and message ids, and a helper that publishes a
// request the way the worker expects it.
//
// Other Go services import it to publish requests and read results; the
// worker and offboardctl import it too, so all of them speak one contract.
// It depends on nothing of the worker. Publishers in other languages find
// the same contract as JSON Schemas in deploy/schema.
package offboard
