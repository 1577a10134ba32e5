package queue

import (
	"errors"
	"fmt"
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
	if _, err := js.CreateStream(t.Context(), jetstream.StreamConfig{Name: "NAKR3", Subjects: []string{"nakr3.>"}, Replicas: 3}); err != nil {
		t.Fatal(err)
	}
	// A nak that reaches the old leader just before it hands over is
	// answered, and the new leader does not know of it (a nak is not
	// replicated): the message then waits out its ack wait, and no client
	// can tell. That race is not the case under test; when a nak answered
	// at its first try is lost so, the case is played again on another
	// consumer.
	for round := 1; ; round++ {
		tries, back := nakAcrossAStepDown(t, nc, js, fmt.Sprintf("c%d", round))
		if back {
			return
		}
		if tries > 1 || round == 3 {
			t.Fatalf("the message did not come back within %v of its nak (ack wait %v; nak sent %d times, round %d)", nakAckWait/4, nakAckWait, tries, round)
		}
		t.Logf("round %d: the nak, answered at once, went to the leader stepping down: played again", round)
	}
}

const nakAckWait = time.Minute

// nakAcrossAStepDown delivers a message of a consumer named name, has the
// consumer's leader step down, and naks the message until a leader
// answers. It returns the naks sent, and whether the message came back
// within a quarter of its ack wait.
func nakAcrossAStepDown(t *testing.T, nc *nats.Conn, js jetstream.JetStream, name string) (tries int, back bool) {
	t.Helper()
	ctx := t.Context()
	if _, err := js.Publish(ctx, "nakr3."+name, []byte("x")); err != nil {
		t.Fatal(err)
	}
	cons, err := js.CreateConsumer(ctx, "NAKR3", jetstream.ConsumerConfig{Durable: name, FilterSubject: "nakr3." + name,
		AckPolicy: jetstream.AckExplicitPolicy, AckWait: nakAckWait, Replicas: 3})
	if err != nil {
		t.Fatal(err)
	}
	// A pull of the consumer just made may find no one to answer it
	// ("no responders") until the server learns which server leads it
	// (see NoResponders): sent again.
	var m jetstream.Msg
	for made := time.Now(); ; time.Sleep(100 * time.Millisecond) {
		if m, err = cons.Next(jetstream.FetchMaxWait(10 * time.Second)); err == nil {
			break
		}
		if !errors.Is(err, nats.ErrNoResponders) || time.Since(made) > 10*time.Second {
			t.Fatal(err)
		}
	}
	// The request goes to the meta leader, which may not answer for a
	// moment ("no responders") on a loaded machine: asked again.
	for stepped := time.Now(); ; time.Sleep(100 * time.Millisecond) {
		_, err := nc.Request("$JS.API.CONSUMER.LEADER.STEPDOWN.NAKR3."+name, nil, 5*time.Second)
		if err == nil {
			break
		}
		if !errors.Is(err, nats.ErrNoResponders) || time.Since(stepped) > 10*time.Second {
			t.Fatal(err)
		}
	}
	sent := time.Now()
	for {
		tries++
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
			return tries, true
		}
		if time.Since(sent) > nakAckWait/4 {
			return tries, false
		}
	}
}
