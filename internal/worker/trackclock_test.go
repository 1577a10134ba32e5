package worker

import (
	"sync/atomic"
	"testing"
	"time"

	"github.com/jonboulle/clockwork"

	"github.com/contoso-secops/mde-offboard/internal/testwait"
)

// TestTrackingEndsNothingWhileTheClockIsOff: a clock stepped a week
// ahead (a hypervisor's time sync, a clock set by hand) makes every
// followed action look older than maxAge. While the limiter says the
// clock is off the NATS server's, or stepped and not measured again, no
// call starts; giving an action up takes no call, and it gave every
// followed action up at once, with a final event, for good. Now an
// action is given up only once the clock is trusted again.
func TestTrackingEndsNothingWhileTheClockIsOff(t *testing.T) {
	t.Parallel()
	clock := clockwork.NewFakeClockAt(time.Date(2026, 11, 24, 10, 0, 0, 0, time.UTC))
	api := scriptedFor(clock, "Pending")
	tr, log := newWeekTracker(t, &api, clock)
	var off atomic.Bool
	tr.clockOff = off.Load
	runTrackingPending(t, tr)
	testwait.Waiters(t, clock, 1)
	off.Store(true)
	clock.Advance(8 * 24 * time.Hour)
	for range 5 {
		testwait.Waiters(t, clock, 1)
		if evs := log.all(); len(evs) != 1 {
			t.Fatalf("events %+v while the clock is off, want the first alone", evs)
		}
		clock.Advance(time.Second)
	}
	off.Store(false)
	trackUntil(t, clock, func() bool {
		evs := log.all()
		return evs[len(evs)-1].Final
	})
	if evs := log.all(); len(evs) != 2 || evs[1].Status != "Pending" {
		t.Errorf("events %+v, want Pending, then Pending final", evs)
	}
	if n := api.count(); n != 0 {
		t.Errorf("%d looks, want none: the action was past maxAge", n)
	}
}
