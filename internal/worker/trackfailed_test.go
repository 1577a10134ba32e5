package worker

import (
	"testing"
	"time"

	"github.com/jonboulle/clockwork"

	"github.com/contoso-secops/mde-offboard/internal/queue/natstest"
	"github.com/contoso-secops/mde-offboard/internal/testwait"
)

// TestTrackingBacksOffAfterFailedLooks: an action whose event the server
// refuses at every look (larger than its max payload, no bound set to cut
// it) is looked at with a doubling interval, up to maxInterval, as after
// a look that says nothing: 12 looks in 6 hours at most, a first check
// of a minute and a maxInterval of an hour. Each failed look was tried
// again after the action's plain interval: a look a minute until maxAge,
// 360 in those 6 hours, each taking a call of the budget the other
// followed actions share.
func TestTrackingBacksOffAfterFailedLooks(t *testing.T) {
	t.Parallel()
	_, js := natstest.Connect(t)
	clock := clockwork.NewFakeClockAt(time.Date(2026, 11, 24, 10, 0, 0, 0, time.UTC))
	scripted := scriptedFor(clock, "Succeeded")
	scripted.pad = 1 << 20
	api := &lookRecorder{actionReader: &scripted, clock: clock}
	tr, log := newStreamTracker(js, contosoLedger(t, js), api, clock, 0)
	runTrackingPending(t, tr)
	for range 360 {
		testwait.Waiters(t, clock, 1)
		clock.Advance(time.Minute)
	}
	testwait.Waiters(t, clock, 1)
	looks := api.looks()
	if len(looks) < 6 || len(looks) > 12 {
		t.Errorf("%d looks in 6 hours, want 6 to 12: %v", len(looks), looks[:min(len(looks), 12)])
	}
	if evs := log.all(); len(evs) != 1 || evs[0].Status != "Pending" {
		t.Errorf("%d events, want the first one only", len(evs))
	}
}
