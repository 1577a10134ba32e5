package worker

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/jonboulle/clockwork"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/contoso-secops/mde-offboard/internal/limiter"
	"github.com/contoso-secops/mde-offboard/internal/mde"
	"github.com/contoso-secops/mde-offboard/internal/mde/mdesim"
	"github.com/contoso-secops/mde-offboard/internal/queue"
	"github.com/contoso-secops/mde-offboard/offboard"
)

// TestFetchedAheadGivesItsRoomBackForAPause: a request fetched ahead
// finds its place 5 ms away and keeps its room for so short a wait; a 429
// then pauses the tenant for a minute. It must give its room back for the
// pause, as every other wait for quota does: a tenant held up never holds
// up the others.
func TestFetchedAheadGivesItsRoomBackForAPause(t *testing.T) {
	t.Parallel()
	epoch := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	clock := clockwork.NewFakeClockAt(epoch)
	lt := limiter.NewTenant(clock)
	l := lt.Add(mde.APIOffboard, []limiter.Window{{Count: 1, Length: time.Second}})
	p, _ := l.TryAcquire(epoch)
	p.Complete(epoch)
	clock.Advance(time.Second - 5*time.Millisecond) // the place frees in 5 ms

	c := newCaller(clock, NewMetrics(prometheus.NewRegistry()), RetryPolicy{}, 1)
	room := make(capacity, 1)
	room <- struct{}{} // the request's room
	ctx := context.WithValue(t.Context(), placeKey{}, &place{c: room, held: true})
	tr := &tenantRun{name: "contoso", limits: lt}
	got := make(chan error, 1)
	go func() {
		p, err := c.acquire(ctx, tr, mde.APIOffboard, false)
		if p != nil {
			p.Release()
		}
		got <- err
	}()
	block := func(n int) {
		t.Helper()
		bctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
		defer cancel()
		if err := clock.BlockUntilContext(bctx, n); err != nil {
			t.Fatalf("waiting for %d timers: %v", n, err)
		}
	}
	block(2)                           // the short wait's bound and the limiter's
	lt.Pause(clock.Now(), time.Minute) // a 429 on another call
	block(2)
	clock.Advance(2 * fetchAhead) // the short wait is over
	deadline := time.Now().Add(10 * time.Second)
	for len(room) != 0 {
		if time.Now().After(deadline) {
			t.Fatalf("the request waiting out a 1m pause holds its room (%d of 1 taken): other tenants cannot be fetched", len(room))
		}
		time.Sleep(time.Millisecond)
	}
	block(1)
	clock.Advance(time.Minute)
	if err := <-got; err != nil {
		t.Fatal(err)
	}
	if len(room) != 1 {
		t.Errorf("the request has its permit but not its room back (%d of 1 taken)", len(room))
	}
}

// TestFetchAheadTakesOnePlaceAtATime: with one place a minute, four
// requests published 5 ms before the place frees: the loop fetches one
// (the calls that could start by then), the first, and it gets the place;
// the other three stay in the stream, not fetched to wait a window.
func TestFetchAheadTakesOnePlaceAtATime(t *testing.T) {
	t.Parallel()
	e := setupLoop(t, `["1/1m"]`, RetryPolicy{})
	e.publish(t, "r-0")
	e.wantCreated(t, "r-0")
	var machines []string
	for i := range 4 {
		id := fmt.Sprintf("%040x", i+1)
		e.sim.AddMachine(loopTenantID, mdesim.Machine{ID: id, ComputerDNSName: fmt.Sprintf("pc-x%d.contoso.local", i),
			OSPlatform: "Windows11", HealthStatus: "Active", LastSeen: time.Now().Add(-time.Hour)})
		machines = append(machines, id)
	}
	e.clock.Advance(time.Minute - 5*time.Millisecond) // the place frees in 5 ms
	for i, m := range machines {
		e.publishFor(t, fmt.Sprintf("r-%d", i+1), m)
	}
	cons, err := e.js.Consumer(t.Context(), offboard.StreamRequests, queue.ConsumerName("contoso", offboard.Normal))
	if err != nil {
		t.Fatal(err)
	}
	pending := func() int {
		info, err := cons.Info(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		return info.NumAckPending
	}
	time.Sleep(time.Second) // real time: lets the loop fetch what it will
	if n := pending(); n != 1 {
		t.Errorf("%d requests fetched 5 ms before the one place frees, want 1", n)
	}
	e.clock.Advance(5 * time.Millisecond)
	e.wantCreated(t, "r-1") // the first published gets the place
	time.Sleep(time.Second)
	if n := pending(); n != 0 {
		t.Errorf("%d requests fetched to wait a whole window for their place, want 0", n)
	}
}

// TestCallTakenAheadGoesOutWhenItsPlaceFrees: the loop takes a fetched
// request's permit up to recordAhead before its place frees, so that the
// call's entries are written meanwhile. The call itself must wait for the
// place: sent earlier, the API could count it in the window it leaves.
func TestCallTakenAheadGoesOutWhenItsPlaceFrees(t *testing.T) {
	t.Parallel()
	epoch := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	clock := clockwork.NewFakeClockAt(epoch)
	lt := limiter.NewTenant(clock)
	l := lt.Add(mde.APIOffboard, []limiter.Window{{Count: 1, Length: time.Second}})
	first, _ := l.TryAcquire(epoch)
	first.Complete(epoch) // its place frees at +1s
	clock.Advance(time.Second - recordAhead + time.Millisecond)
	w := &Worker{clock: clock}
	tr := &tenantRun{name: "contoso", limits: lt}
	p := w.aheadPermit(t.Context(), tr, false)
	if p == nil || !p.NotBefore().Equal(epoch.Add(time.Second)) {
		t.Fatalf("aheadPermit %v before the place frees: %v", recordAhead-time.Millisecond, p)
	}
	c := newCaller(clock, NewMetrics(prometheus.NewRegistry()), RetryPolicy{}, 1)
	sent := make(chan time.Time, 1)
	go func() {
		_, _ = c.send(t.Context(), tr, mde.APIOffboard, p, func(context.Context) *mde.Verdict {
			sent <- clock.Now()
			return &mde.Verdict{Sent: true}
		})
	}()
	bctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	if err := clock.BlockUntilContext(bctx, 1); err != nil {
		t.Fatalf("the call does not wait for its place: %v", err)
	}
	select {
	case at := <-sent:
		t.Fatalf("the call went out at +%v, before its place frees at +1s", at.Sub(epoch))
	default:
	}
	clock.Advance(recordAhead - time.Millisecond)
	if at := <-sent; !at.Equal(epoch.Add(time.Second)) {
		t.Errorf("the call went out at +%v, want +1s", at.Sub(epoch))
	}
}
