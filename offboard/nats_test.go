package offboard_test

import (
	"testing"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/contoso-secops/mde-offboard/internal/queue"
)

// startNATS starts a NATS server with JetStream in this process, on a
// free port, storing in a temporary directory, and returns a JetStream
// client of it. With streams, it also creates the worker's streams and
// consumers for tenant "contoso", as the worker does at start.
func startNATS(t *testing.T, streams bool) jetstream.JetStream {
	t.Helper()
	s, err := queue.StartEmbedded(queue.EmbeddedOptions{StoreDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Shutdown(); s.WaitForShutdown() })
	nc, err := nats.Connect(s.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	if streams {
		if _, err := queue.Ensure(t.Context(), js, queue.Settings{Tenants: []string{"contoso"}}); err != nil {
			t.Fatal(err)
		}
	}
	return js
}
