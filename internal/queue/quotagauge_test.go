package queue

import (
	"context"
	"testing"
	"time"

	"github.com/contoso-secops/mde-offboard/internal/limiter"
	"github.com/contoso-secops/mde-offboard/internal/limiter/steptest"
)

// TestQuotaGaugeDuringAStepForgetsNoCall: another replica's 100 calls of
// a moment ago fill the minute. This process's clock is stepped two
// hours forward, and the quota gauges are read meanwhile (the worker
// reads Remaining every 15 s, whatever the clock). Once the clock is set
// right and measured, the 100 calls still fill the minute. Before, the
// reading by the stepped clock dropped them as older than the hour, for
// good: 100 more calls went out in the minute.
func TestQuotaGaugeDuringAStepForgetsNoCall(t *testing.T) {
	t.Parallel()
	js, s := contosoQueue(t)
	other, err := NewQuotaJournal(t.Context(), js, s.Subjects)
	if err != nil {
		t.Fatal(err)
	}
	clock := steptest.NewClock(t)
	shared := limiter.NewShared(limiter.SharedOptions{Journal: other, Clock: clock, Margin: 500 * time.Millisecond, Lease: 15 * time.Second})
	t.Cleanup(func() { shared.Close(context.Background()) })
	l := shared.Tenant("contoso").Add("offboard", limiter.Default())
	followCaughtUp(t, js, s.Subjects, shared, time.Hour+16*time.Second)

	ev := limiter.Event{Writer: "other", Written: time.Now().UnixNano()}
	for i := range 100 {
		ev.Done = append(ev.Done, limiter.Call{API: "offboard", ID: uint64(i + 1), At: time.Now().UnixNano()})
	}
	if _, err := other.Append(t.Context(), "contoso", ev, 0); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second) // real time: a bound, not a measure
	for got := l.Remaining(clock.Now()); got[0] != 0; got = l.Remaining(clock.Now()) {
		if time.Now().After(deadline) {
			t.Fatalf("remaining %v 5s after the other replica's calls: the feed never brought them", got)
		}
		time.Sleep(10 * time.Millisecond)
	}

	clock.Step(2 * time.Hour)
	l.Remaining(clock.Now()) // the gauges, by the stepped clock
	clock.Step(-2 * time.Hour)
	waitClockRight(t, shared)
	if got := l.Remaining(clock.Now()); got[0] != 0 || got[1] != 1400 {
		t.Errorf("remaining %v, want [0 1400]: the other replica's 100 calls of a moment ago", got)
	}
	if p, _ := l.TryAcquire(clock.Now()); p != nil {
		p.Release()
		t.Error("a permit in a minute the other replica's 100 calls fill")
	}
}
