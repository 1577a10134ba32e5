package queue

import (
	"errors"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/contoso-secops/mde-offboard/internal/queue/natstest"
)

// TestNakIsAnsweredAndRedelivers: Nak returns once the server has the
// nak, and the message comes back after the delay, long before its ack
// wait; a nak for a consumer that is gone (a lone server restarted) is
// no error, as no one holds the delivery.
func TestNakIsAnsweredAndRedelivers(t *testing.T) {
	t.Parallel()
	_, js := natstest.Connect(t)
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
	if err := Nak(ctx, js, m, 50*time.Millisecond); err != nil {
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
	if err := Nak(ctx, js, again, 0); err != nil {
		t.Errorf("Nak for a consumer that is gone: %v, want nil", err)
	}
}

// TestNakBetweenConsumerLeadersIsSentAgain: in a cluster, a nak sent
// while the consumer changes leader finds no one listening on its reply
// subject. The consumer is still there, and its next leader holds the
// delivery: the nak fails as an outage, sent again (as the worker does)
// until the new leader has it, and the message comes back at once, not
// after its ack wait. Before, no responders read as a consumer gone, the
// nak was dropped, and the message waited out its ack wait.
func TestNakBetweenConsumerLeadersIsSentAgain(t *testing.T) {
	t.Parallel()
	c := natstest.Start(t, 3)
	nc, js := c.Connect(t)
	ctx := t.Context()
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "NAKR3", Subjects: []string{"nakr3.>"}, Replicas: 3}); err != nil {
		t.Fatal(err)
	}
	if _, err := js.Publish(ctx, "nakr3.a", []byte("x")); err != nil {
		t.Fatal(err)
	}
	const ackWait = time.Minute
	cons, err := js.CreateConsumer(ctx, "NAKR3", jetstream.ConsumerConfig{Durable: "c", AckPolicy: jetstream.AckExplicitPolicy, AckWait: ackWait, Replicas: 3})
	if err != nil {
		t.Fatal(err)
	}
	m, err := cons.Next(jetstream.FetchMaxWait(10 * time.Second))
	if err != nil {
		t.Fatal(err)
	}
	// The request goes to the meta leader, which may not answer for a
	// moment ("no responders") on a loaded machine: asked again.
	for stepped := time.Now(); ; time.Sleep(100 * time.Millisecond) {
		_, err := nc.Request("$JS.API.CONSUMER.LEADER.STEPDOWN.NAKR3.c", nil, 5*time.Second)
		if err == nil {
			break
		}
		if !errors.Is(err, nats.ErrNoResponders) || time.Since(stepped) > 10*time.Second {
			t.Fatal(err)
		}
	}
	sent := time.Now()
	for {
		sctx, cancel := StepCtx(ctx)
		err := Nak(sctx, js, m, 0)
		cancel()
		if err == nil {
			break
		}
		if !Outage(err) || time.Since(sent) > 30*time.Second {
			t.Fatalf("Nak: %v", err)
		}
		time.Sleep(250 * time.Millisecond)
	}
	for {
		again, err := cons.Next(jetstream.FetchMaxWait(time.Second))
		if err == nil {
			if meta, _ := again.Metadata(); meta == nil || meta.NumDelivered != 2 {
				t.Fatalf("metadata %+v", meta)
			}
			break
		}
		if time.Since(sent) > ackWait/4 {
			t.Fatalf("the message did not come back within %v of its nak (ack wait %v): %v", ackWait/4, ackWait, err)
		}
	}
}
