package worker

import (
	"context"
	"testing"
	"time"

	"github.com/jonboulle/clockwork"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/contoso-secops/mde-offboard/internal/limiter"
	"github.com/contoso-secops/mde-offboard/internal/mde"
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
		p, err := c.acquire(ctx, tr, mde.APIOffboard)
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
