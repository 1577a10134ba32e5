package worker

import (
	"strings"
	"testing"
	"time"

	"github.com/jonboulle/clockwork"
	"go.uber.org/zap"

	"github.com/contoso-secops/mde-offboard/internal/config"
	"github.com/contoso-secops/mde-offboard/internal/queue/natstest"
	"github.com/contoso-secops/mde-offboard/internal/testwait"
	"github.com/contoso-secops/mde-offboard/offboard"
)

// TestTrackingStatusNoEventCanCarry: a look that ends past maxAge (its
// call waited out a 429's pause) reads a status of 200 KB, more than an
// action event of 128 KB can carry. The action is given up with its last
// status, Pending, as after an unreadable answer. The status was stored
// as the final event's, too large at every try: the action was never
// given up, its state written again at each try, for ever.
func TestTrackingStatusNoEventCanCarry(t *testing.T) {
	t.Parallel()
	_, js := natstest.Connect(t)
	clock := clockwork.NewFakeClockAt(time.Date(2026, 11, 24, 10, 0, 0, 0, time.UTC))
	api := &lateActions{late: 1, wait: 15 * time.Minute, scriptedActions: scriptedFor(clock, strings.Repeat("x", 200<<10))}
	log := eventLog{max: 128 << 10}
	tr := newTracker(trackerConfig{
		tenant: "contoso", store: contosoLedger(t, js), actions: api, clock: clock, log: zap.NewNop(),
		cfg: config.Tracking{Enabled: true, FirstCheck: config.Duration(time.Minute),
			MaxInterval: config.Duration(time.Hour), MaxAge: config.Duration(10 * time.Minute)},
		publish:  log.publish,
		subjects: offboard.Subjects{}, notFoundCheck: 3, maxEvent: log.max - resultRoom,
	})
	runTrackingPending(t, tr)
	for range 6 * 60 { // six hours in steps of a minute
		testwait.Waiters(t, clock, 1)
		if evs := log.all(); evs[len(evs)-1].Final {
			break
		}
		clock.Advance(time.Minute)
	}
	evs := log.all()
	last := evs[len(evs)-1]
	t.Logf("%d events in %v, the last %.20s final=%v", len(evs), clock.Since(evs[0].ObservedAt), last.Status, last.Final)
	if !last.Final || last.Status != "Pending" {
		t.Errorf("the last event %.20s final=%v, want Pending, final", last.Status, last.Final)
	}
}
