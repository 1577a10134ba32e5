package worker

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/jonboulle/clockwork"

	"github.com/contoso-secops/mde-offboard/internal/limiter"
	"github.com/contoso-secops/mde-offboard/internal/mde"
)

// TestTrackingBacksOffWhileLooksSayNothing: a look that says nothing
// about the action (the login host refusing the credentials, a 404 page
// that is not the API's) keeps the action followed until maxAge, which
// is a week by default. The looks back off as looks that see no change
// do: at an unchanged interval, a tenant whose secret expired asked the
// login host for a token at every action's first interval (a minute)
// for a week, and a proxy's page spent a machineactions call as often.
func TestTrackingBacksOffWhileLooksSayNothing(t *testing.T) {
	t.Parallel()
	for name, mk := range map[string]func(clockwork.Clock) actionReader{
		"refused credentials": func(clock clockwork.Clock) actionReader { return refusedLooks(clock, 4) },
		"a 404 page":          func(clock clockwork.Clock) actionReader { return pageLooks(clock, 4) },
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			followBackingOff(t, mk)
		})
	}
}

// followBackingOff follows a Pending action through mk's looks, a week's
// tracker on a fake clock, until its final event, and checks that its
// five looks backed off. It returns the events published.
func followBackingOff(t *testing.T, mk func(clockwork.Clock) actionReader) []ActionEvent {
	t.Helper()
	clock := clockwork.NewFakeClockAt(time.Date(2026, 11, 24, 10, 0, 0, 0, time.UTC))
	api := &lookRecorder{actionReader: mk(clock), clock: clock}
	tr, log := newWeekTracker(t, api, clock)
	runTrackingPending(t, tr)
	trackUntil(t, clock, func() bool {
		evs := log.all()
		return evs[len(evs)-1].Final
	})
	looks := api.looks()
	if len(looks) != 5 {
		t.Fatalf("%d looks, want 5: %v", len(looks), looks)
	}
	first, last := looks[1].Sub(looks[0]), looks[4].Sub(looks[3])
	if last < 4*first {
		t.Errorf("looks %v apart at first, %v at the last: no backoff", first, last)
	}
	return log.all()
}

// lookRecorder notes when each look was made.
type lookRecorder struct {
	actionReader
	clock clockwork.Clock
	mu    sync.Mutex
	at    []time.Time
}

func (l *lookRecorder) get(ctx context.Context, p *limiter.Permit, id string) (*mde.Verdict, error) {
	l.mu.Lock()
	l.at = append(l.at, l.clock.Now())
	l.mu.Unlock()
	return l.actionReader.get(ctx, p, id)
}

func (l *lookRecorder) looks() []time.Time {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]time.Time(nil), l.at...)
}
