package queue

import (
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/contoso-secops/mde-offboard/internal/queue/natstest"
)

// TestNakIsAnsweredAndRedelivers: Nak returns once the server has the
// nak, and the message comes back after the delay, long before its ack
// wait; a nak for a consumer that is gone (a lone server restarted) is
// no error, as no one holds the delivery.
func TestNakIsAnsweredAndRedelivers(t *testing.T) {
	t.Parallel()
	nc, js := natstest.Connect(t)
	ctx := t.Context()
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "NAK", Subjects: []string{"nak.>"}}); err != nil {
		t.Fatal(err)
	}
	if _, err := js.Publish(ctx, "nak.a", []byte("x")); err != nil {
		t.Fatal(err)
	}
	cons, err := js.CreateConsumer(ctx, "NAK", jetstream.ConsumerConfig{Durable: "c", AckPolicy: jetstream.AckExplicitPolicy, AckWait: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	next := func() jetstream.Msg {
		t.Helper()
		m, err := cons.Next(jetstream.FetchMaxWait(10 * time.Second))
		if err != nil {
			t.Fatal(err)
		}
		return m
	}
	m := next()
	if err := Nak(ctx, nc, m, 50*time.Millisecond); err != nil {
		t.Fatalf("Nak: %v", err)
	}
	again := next()
	meta, err := again.Metadata()
	if err != nil {
		t.Fatal(err)
	}
	if meta.NumDelivered != 2 {
		t.Errorf("delivered %d times, want 2", meta.NumDelivered)
	}
	if err := js.DeleteConsumer(ctx, "NAK", "c"); err != nil {
		t.Fatal(err)
	}
	if err := Nak(ctx, nc, again, 0); err != nil {
		t.Errorf("Nak for a consumer that is gone: %v, want nil", err)
	}
}
