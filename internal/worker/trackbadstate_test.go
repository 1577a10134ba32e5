package worker

import (
	"context"
	"testing"
	"time"

	"github.com/jonboulle/clockwork"
	"go.uber.org/zap"

	"github.com/contoso-secops/mde-offboard/internal/config"
	"github.com/contoso-secops/mde-offboard/internal/queue/natstest"
	"github.com/contoso-secops/mde-offboard/internal/testwait"
	"github.com/contoso-secops/mde-offboard/offboard"
)

// TestTrackingStateThatDoesNotDecode: a followed action's state written
// over in the ledger with one the tracker cannot read (by hand, or by a
// release that stores it otherwise) is left alone, as a scan leaves it.
// Held in memory after a look, it was read again at once after each
// failed claim: thousands of ledger reads a second, until the next scan.
func TestTrackingStateThatDoesNotDecode(t *testing.T) {
	t.Parallel()
	nc, js := natstest.Connect(t)
	ledger := contosoLedger(t, js)
	clock := clockwork.NewFakeClockAt(time.Date(2026, 11, 24, 10, 0, 0, 0, time.UTC))
	api := scriptedFor(clock, "Pending")
	tr := newTracker(trackerConfig{
		tenant: "contoso", store: ledger, actions: &api, clock: clock, log: zap.NewNop(),
		cfg: config.Tracking{Enabled: true, FirstCheck: config.Duration(time.Minute),
			MaxInterval: config.Duration(time.Hour), MaxAge: config.Duration(168 * time.Hour)},
		publish: (&eventLog{}).publish, subjects: offboard.Subjects{}, notFoundCheck: 3,
	})
	e := &trackEnv{t: t}
	e.countReads(nc.ConnectedUrl())
	runTrackingPending(t, tr)
	testwait.Waiters(t, clock, 1)
	clock.Advance(time.Minute) // the first look
	for api.count() == 0 {
		testwait.Waiters(t, clock, 1)
	}
	testwait.Waiters(t, clock, 1)
	if err := ledger.Track(t.Context(), "contoso", "act-1", []byte(`{"actionId":"act-1","since":"yesterday"}`)); err != nil {
		t.Fatal(err)
	}
	before := e.readsSoFar()
	clock.Advance(2 * time.Minute) // the second look is due
	ctx, cancel := context.WithTimeout(t.Context(), 500*time.Millisecond)
	defer cancel()
	<-ctx.Done()
	reads := e.readsSoFar() - before
	t.Logf("%d ledger reads in half a second", reads)
	if reads > 10 {
		t.Errorf("%d ledger reads in half a second of a state that does not decode, the clock standing", reads)
	}
	if q, ids := (&trackEnv{tr: tr}).held(); q != 0 || ids != 0 {
		t.Errorf("%d actions held, %d ids, want none", q, ids)
	}
}
