package natstest

import (
	"fmt"
	"testing"

	"github.com/nats-io/nats.go/jetstream"
)

// TestClusterTakesStreamsAtOnce: once Start returns, a stream with three
// replicas can be placed, the first thing a worker does on a new cluster.
// Before, Start waited for a meta leader only, and the stream was now and
// then refused: "no suitable peers for placement".
func TestClusterTakesStreamsAtOnce(t *testing.T) {
	for i := range 8 {
		t.Run(fmt.Sprint(i), func(t *testing.T) {
			t.Parallel()
			c := Start(t, 3)
			_, js := c.Connect(t)
			if _, err := js.CreateStream(t.Context(), jetstream.StreamConfig{Name: "R3", Subjects: []string{"r3"}, Replicas: 3}); err != nil {
				t.Fatalf("a stream with three replicas as the cluster is up: %v", err)
			}
		})
	}
}
