package queue

import (
	"context"
	"errors"
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

// TestWakeUpDroppedWhileASourceIsMadeIsNoticed: a tenant's source is
// being made (its consumers' counts read, the source not yet among the
// router's) when a request of the tenant is published and its wake-up
// dropped. The look after the drop (lookOut) takes the sources made: the
// new one looks itself, and its request is served at once, not at the
// idle poll (IdlePoll, 30 s). A thousand tenants' sources are made at
// start, when a backlog's wake-ups come in a burst.
func TestWakeUpDroppedWhileASourceIsMadeIsNoticed(t *testing.T) {
	// Not parallel: it sets sourceCounted and lookedOut.
	nc, js, r, subj := routed(t, "late", "other")
	if err := r.sub.SetPendingLimits(1, -1); err != nil {
		t.Fatal(err)
	}
	pub, err := nats.Connect(nc.ConnectedUrl())
	if err != nil {
		t.Fatal(err)
	}
	defer pub.Close()
	looked := make(chan struct{}, 1)
	lookedOut = func() {
		select {
		case looked <- struct{}{}:
		default:
		}
	}
	var hookErr error
	sourceCounted = func(tenant string) {
		if tenant != "late" {
			return
		}
		r.mu.Lock() // the handler is held up: the last two are dropped
		for _, s := range []string{subj.Request("other", offboard.Normal), subj.Request("other", offboard.Normal), subj.Request("late", offboard.Normal)} {
			if err := pub.Publish(s, []byte("x")); err != nil {
				hookErr = err
			}
		}
		if err := pub.Flush(); err != nil {
			hookErr = err
		}
		for until := time.Now().Add(10 * time.Second); time.Now().Before(until); time.Sleep(time.Millisecond) {
			if n, _ := r.sub.Dropped(); n >= 2 { // the tenant's among them
				break
			}
		}
		r.mu.Unlock()
		select {
		case <-looked: // the look after the drop is over, without this source
		case <-time.After(10 * time.Second):
			hookErr = errors.New("no look after the drop in 10 s")
		}
	}
	t.Cleanup(func() { sourceCounted, lookedOut = func(string) {}, func() {} })
	src, err := r.Source(t.Context(), js, "late", 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if hookErr != nil {
		t.Fatal(hookErr)
	}
	dropped, _ := r.sub.Dropped()
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Second) // well within IdlePoll
	defer cancel()
	start := time.Now()
	ds, err := src.NextBatch(ctx, 1, offboard.Normal, offboard.Bulk)
	if err != nil {
		t.Fatalf("%d wake-up(s) dropped while the source was made: its request not served in %v: %v", dropped, time.Since(start).Round(time.Millisecond), err)
	}
	if err := ds[0].Msg.Ack(); err != nil {
		t.Fatal(err)
	}
	t.Logf("%d wake-up(s) dropped; request served after %v", dropped, time.Since(start).Round(time.Millisecond))
}
