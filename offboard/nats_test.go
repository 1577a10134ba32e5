package offboard_test

import (
	"testing"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/contoso-secops/mde-offboard/internal/queue"
	"github.com/contoso-secops/mde-offboard/internal/queue/natstest"
)

// startNATS starts a NATS server with JetStream (natstest.Connect) and
// returns a JetStream client of it. With streams, it also creates the
// worker's streams and consumers for tenant "contoso", as the worker does
// at start.
func startNATS(t *testing.T, streams bool) jetstream.JetStream {
	t.Helper()
	_, js := natstest.Connect(t)
	if streams {
		if _, err := queue.Ensure(t.Context(), js, queue.Settings{Tenants: []string{"contoso"}}); err != nil {
			t.Fatal(err)
		}
	}
	return js
}
