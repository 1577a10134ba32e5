package queue

import (
	"context"
	"testing"
	"time"

	"github.com/contoso-secops/mde-offboard/internal/limiter"
	"github.com/contoso-secops/mde-offboard/internal/limiter/steptest"
)

// TestRestartWithTheClockAheadCapsFromTheServer: the journal holds an
// entry dated ten hours ahead (a pause, a call's end and a call under
// way: a writer whose clock was far ahead, or not the worker). A process
// starts with its clock two hours ahead (a hardware clock read as UTC
// east of it, set right by NTP later) and reads the journal; its clock is
// then set right. Once it is measured, the entry holds the tenant an hour
// at most, and the two calls leave the hour two hours on, as in a process
// whose clock was right. Before, the caps counted from the clock
// two hours ahead: the pause held the tenant for three hours, and the
// two calls held their places as long.
func TestRestartWithTheClockAheadCapsFromTheServer(t *testing.T) {
	t.Parallel()
	js, s := contosoQueue(t)
	other, err := NewQuotaJournal(t.Context(), js, s.Subjects)
	if err != nil {
		t.Fatal(err)
	}
	far := time.Now().Add(10 * time.Hour)
	ev := limiter.Event{Writer: "other", Written: time.Now().UnixNano(), Paused: far.UnixNano(),
		Reserved: []limiter.Call{{API: "offboard", ID: 2, At: far.UnixNano()}},
		Done:     []limiter.Call{{API: "offboard", ID: 1, At: far.UnixNano()}}}
	if _, err := other.Append(t.Context(), "contoso", ev, 0); err != nil {
		t.Fatal(err)
	}
	clock := steptest.NewClock(t)
	clock.Step(2 * time.Hour)
	const margin = 500 * time.Millisecond
	shared := limiter.NewShared(limiter.SharedOptions{Journal: other, Clock: clock, Margin: margin, Lease: 15 * time.Second})
	t.Cleanup(func() { shared.Close(context.Background()) })
	tenant := shared.Tenant("contoso")
	l := tenant.Add("offboard", limiter.Default())
	followCaughtUp(t, js, s.Subjects, shared, time.Hour+16*time.Second)
	clock.Step(-2 * time.Hour) // set right
	waitClockRight(t, shared)
	now := clock.Now()
	if until, most := tenant.PausedUntil(), now.Add(limiter.MaxPause+margin+5*time.Second); until.After(most) {
		t.Errorf("paused for %v from now, want an hour at most: the pause's cap counted from the clock ahead", until.Sub(now).Round(time.Minute))
	}
	// Two hours on, the call under way (due an hour on at most) and the
	// call's end (an hour on at most) have left the hour.
	later := now.Add(2*time.Hour + 10*time.Second)
	if got := l.Remaining(later); got[0] != 100 || got[1] != 1500 {
		t.Errorf("remaining two hours on %v, want [100 1500]: the calls' caps counted from the clock ahead", got)
	}
}
