package queue

import (
	"testing"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/contoso-secops/mde-offboard/offboard"
)

// TestEnsureSetsBackAHeadersOnlyConsumer: a tenant's consumer, or the
// unrouted one, edited by hand to deliver headers only (nats consumer
// edit, which leaves the metadata as it was) hands the worker requests
// without their bodies. Setup sets it back. Before, it took the consumer
// for its own, as its fingerprint matched, and left it so.
func TestEnsureSetsBackAHeadersOnlyConsumer(t *testing.T) {
	t.Parallel()
	js, s := ensureContoso(t)
	ctx := t.Context()
	name := editContosoConsumer(t, js, func(c *jetstream.ConsumerConfig) { c.HeadersOnly = true })
	unrouted, err := js.Consumer(ctx, offboard.StreamRequests, ConsumerUnrouted)
	if err != nil {
		t.Fatal(err)
	}
	cfg := unrouted.CachedInfo().Config
	cfg.HeadersOnly = true
	if _, err := js.UpdateConsumer(ctx, offboard.StreamRequests, cfg); err != nil {
		t.Fatal(err)
	}
	if _, err := Ensure(ctx, js, s); err != nil {
		t.Fatal(err)
	}
	for _, n := range []string{name, ConsumerUnrouted} {
		c, err := js.Consumer(ctx, offboard.StreamRequests, n)
		if err != nil {
			t.Fatal(err)
		}
		if c.CachedInfo().Config.HeadersOnly {
			t.Errorf("%s after setup: delivers headers only", n)
		}
	}
}
