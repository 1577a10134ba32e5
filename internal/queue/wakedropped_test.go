package queue

import (
	"context"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/contoso-secops/mde-offboard/offboard"
)

// TestWakeUpDroppedBySlowRouterIsNoticed: the router's subscription
// falls behind (its handler held up: a process starved of CPU, a burst of
// requests of 64 KiB) and the connection drops the wake-up of an idle
// tenant's request (a slow consumer). The router notices the drop at its
// next message and has every source look at its consumers: the request
// is served at once, not at the next idle poll (IdlePoll, 30 s).
func TestWakeUpDroppedBySlowRouterIsNoticed(t *testing.T) {
	t.Parallel()
	nc, js, r, subj := routed(t, "idle", "other")
	src, err := r.Source(t.Context(), js, "idle", 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	// The message in the handler fills the limit (the client counts it
	// until the handler returns): the next two are dropped.
	if err := r.sub.SetPendingLimits(1, -1); err != nil {
		t.Fatal(err)
	}
	pub, err := nats.Connect(nc.ConnectedUrl())
	if err != nil {
		t.Fatal(err)
	}
	defer pub.Close()
	r.mu.Lock() // the handler is held up
	for _, s := range []string{subj.Request("other", offboard.Normal), subj.Request("other", offboard.Normal), subj.Request("idle", offboard.Normal)} {
		if err := pub.Publish(s, []byte("x")); err != nil {
			r.mu.Unlock()
			t.Fatal(err)
		}
	}
	if err := pub.Flush(); err != nil {
		r.mu.Unlock()
		t.Fatal(err)
	}
	for until := time.Now().Add(10 * time.Second); ; time.Sleep(time.Millisecond) {
		if n, _ := r.sub.Dropped(); n > 0 {
			break
		}
		if time.Now().After(until) {
			r.mu.Unlock()
			t.Fatal("no wake-up dropped in 10 s")
		}
	}
	r.mu.Unlock()
	dropped, _ := r.sub.Dropped()
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Second) // well within IdlePoll
	defer cancel()
	start := time.Now()
	ds, err := src.NextBatch(ctx, 1, offboard.Normal, offboard.Bulk)
	if err != nil {
		t.Fatalf("%d wake-up(s) dropped: the idle tenant's request not served in %v: %v", dropped, time.Since(start).Round(time.Millisecond), err)
	}
	if err := ds[0].Msg.Ack(); err != nil {
		t.Fatal(err)
	}
	t.Logf("%d wake-up(s) dropped; request served after %v", dropped, time.Since(start).Round(time.Millisecond))
}
