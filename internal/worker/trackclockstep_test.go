package worker

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jonboulle/clockwork"

	"github.com/contoso-secops/mde-offboard/internal/limiter"
	"github.com/contoso-secops/mde-offboard/internal/mde"
	"github.com/contoso-secops/mde-offboard/internal/testwait"
)

// steppedActions answers looks as scriptedActions does; during the look
// numbered step, the wall clock is stepped on by by (a time sync), and
// said off until off is cleared.
type steppedActions struct {
	scriptedActions
	step int
	by   time.Duration
	off  *atomic.Bool
}

func (s *steppedActions) get(ctx context.Context, p *limiter.Permit, id string) (*mde.Verdict, error) {
	v, err := s.scriptedActions.get(ctx, p, id)
	if s.count() == s.step {
		s.off.Store(true)
		s.clock.(*clockwork.FakeClock).Advance(s.by)
	}
	return v, err
}

// TestTrackingEndsNothingWhenTheClockStepsDuringALook: a clock stepped
// a week ahead while a look's call is out makes the action, a few minutes
// old, look older than maxAge when the answer comes. No action is given
// up at maxAge while the clock is off; the look's answer gave it up at
// once, with a final Pending event, for good. Now it is given up once the
// clock is trusted again.
func TestTrackingEndsNothingWhenTheClockStepsDuringALook(t *testing.T) {
	t.Parallel()
	clock := clockwork.NewFakeClockAt(time.Date(2026, 11, 24, 10, 0, 0, 0, time.UTC))
	var off atomic.Bool
	api := &steppedActions{scriptedActions: scriptedFor(clock, "Pending"), step: 2, by: 8 * 24 * time.Hour, off: &off}
	tr, log := newWeekTracker(t, api, clock)
	tr.clockOff = off.Load
	runTrackingPending(t, tr)
	for range 60 {
		testwait.Waiters(t, clock, 1)
		if evs := log.all(); len(evs) != 1 {
			last := evs[len(evs)-1]
			t.Fatalf("%d events while the clock is off, the last %s final=%v, want the first alone", len(evs), last.Status, last.Final)
		}
		clock.Advance(20 * time.Second)
	}
	if n := api.count(); n < 2 {
		t.Fatalf("%d looks, want the clock stepped during the second", n)
	}
	// Trusted again, the clock says the action is past maxAge: it ends.
	off.Store(false)
	trackUntil(t, clock, func() bool {
		evs := log.all()
		return evs[len(evs)-1].Final
	})
}
