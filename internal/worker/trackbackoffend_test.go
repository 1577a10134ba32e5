package worker

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/jonboulle/clockwork"
	"go.uber.org/zap"

	"github.com/contoso-secops/mde-offboard/internal/config"
	"github.com/contoso-secops/mde-offboard/internal/queue/natstest"
	"github.com/contoso-secops/mde-offboard/internal/testwait"
	"github.com/contoso-secops/mde-offboard/offboard"
)

// TestTrackingBackedOffEndsAtMaxAge: a look that fails shortly before
// the action's maxAge (its event refused: NATS away a moment) backs off,
// and the action is still given up at maxAge. Before, the back-off's
// next look was held to maxAge from the failure, not to the action's
// end: a look failed at 2h03 of a 2h10 maxAge put the end off by an
// hour's interval, to 3h03 (by as much as maxAge with many actions
// followed, their looks spread N / B apart).
func TestTrackingBackedOffEndsAtMaxAge(t *testing.T) {
	t.Parallel()
	const maxAge = 130 * time.Minute
	start := time.Date(2026, 11, 24, 10, 0, 0, 0, time.UTC)
	clock := clockwork.NewFakeClockAt(start)
	// Looks at 1, 3, 7, 15, 31 and 63 minutes see Pending; the one at
	// 123 minutes InProgress, whose event is refused.
	api := scriptedFor(clock, "Pending", "Pending", "Pending", "Pending", "Pending", "Pending", "InProgress")
	_, js := natstest.Connect(t)
	log := &eventLog{}
	var once sync.Once
	tr := newTracker(trackerConfig{
		tenant: "contoso", store: contosoLedger(t, js), actions: &api, clock: clock, log: zap.NewNop(),
		cfg: config.Tracking{Enabled: true, FirstCheck: config.Duration(time.Minute),
			MaxInterval: config.Duration(time.Hour), MaxAge: config.Duration(maxAge)},
		publish: func(ctx context.Context, subject, msgID string, data []byte) error {
			refused := false
			if msgID == offboard.ActionMsgID("contoso", "act-1", "InProgress") {
				once.Do(func() { refused = true })
			}
			if refused {
				return errors.New("nats: timeout")
			}
			return log.publish(ctx, subject, msgID, data)
		},
		subjects: offboard.Subjects{}, notFoundCheck: 3,
	})
	runTrackingPending(t, tr)
	final := func() (ActionEvent, bool) {
		for _, ev := range log.all() {
			if ev.Final {
				return ev, true
			}
		}
		return ActionEvent{}, false
	}
	for clock.Since(start) < 5*time.Hour {
		if _, ok := final(); ok {
			break
		}
		testwait.Waiters(t, clock, 1)
		clock.Advance(time.Minute)
	}
	ev, ok := final()
	if !ok {
		t.Fatalf("no final event within 5 hours of a %v maxAge", maxAge)
	}
	if at := ev.ObservedAt.Sub(start); at > maxAge+time.Minute {
		t.Errorf("final event %s at %v, maxAge %v", ev.Status, at, maxAge)
	}
}
