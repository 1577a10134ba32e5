package queue

import (
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/contoso-secops/mde-offboard/internal/queue/natstest"
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

// TestWholeRefusesAStreamMadeAgain: a headers-only delivery read whole
// after its stream was deleted and made again would take the body of
// another message stored at its place. Whole says the delivery's message
// is gone instead.
func TestWholeRefusesAStreamMadeAgain(t *testing.T) {
	t.Parallel()
	_, js := natstest.Connect(t)
	ctx := t.Context()
	cfg := jetstream.StreamConfig{Name: "WHOLE", Subjects: []string{"whole.>"}}
	s, err := js.CreateStream(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := js.Publish(ctx, "whole.a", []byte(`{"first":true}`)); err != nil {
		t.Fatal(err)
	}
	c, err := s.CreateConsumer(ctx, jetstream.ConsumerConfig{AckPolicy: jetstream.AckExplicitPolicy, HeadersOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	msg, err := c.Next(jetstream.FetchMaxWait(5 * time.Second))
	if err != nil {
		t.Fatal(err)
	}
	got, err := Whole(ctx, js, msg)
	if err != nil || string(got.Data()) != `{"first":true}` {
		t.Fatalf("read whole from its stream: %q, %v", got.Data(), err)
	}
	if err := js.DeleteStream(ctx, cfg.Name); err != nil {
		t.Fatal(err)
	}
	natstest.CreateStreamAgain(t, js, cfg)
	if _, err := js.Publish(ctx, "whole.b", []byte(`{"second":true}`)); err != nil {
		t.Fatal(err)
	}
	got, err = Whole(ctx, js, msg)
	if err == nil {
		t.Fatalf("read whole after its stream was made again: %q, want an error", got.Data())
	}
}
