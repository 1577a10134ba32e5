package worker

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/jonboulle/clockwork"
	"go.uber.org/zap"

	"github.com/contoso-secops/mde-offboard/internal/config"
	"github.com/contoso-secops/mde-offboard/internal/queue/natstest"
	"github.com/contoso-secops/mde-offboard/internal/testwait"
	"github.com/contoso-secops/mde-offboard/offboard"
)

// TestTrackingEndLostIsStoredWithoutASecondEvent: an action seen
// Succeeded whose final event is out but whose ended mark is not stored
// (the ledger's write lost) gets its mark at the next try, with no
// second final event. The try came after the back-off (here 48 h, past
// the results stream's duplicate window of a day) as a new look, which
// published the final event again: stored a second time.
func TestTrackingEndLostIsStoredWithoutASecondEvent(t *testing.T) {
	t.Parallel()
	_, js := natstest.Connect(t)
	start := time.Date(2026, 11, 24, 10, 0, 0, 0, time.UTC)
	clock := clockwork.NewFakeClockAt(start)
	api := scriptedFor(clock, "Succeeded")
	store := &endLostOnce{trackStore: contosoLedger(t, js)}
	log := &eventLog{}
	tr := newTracker(trackerConfig{
		tenant: "contoso", store: store, actions: &api, clock: clock, log: zap.NewNop(),
		cfg: config.Tracking{Enabled: true, FirstCheck: config.Duration(30 * time.Hour),
			MaxInterval: config.Duration(48 * time.Hour), MaxAge: config.Duration(168 * time.Hour)},
		publish: log.publish, subjects: offboard.Subjects{}, notFoundCheck: 3,
	})
	runTrackingPending(t, tr)
	ended := func() bool {
		data, _, err := store.TrackedState(t.Context(), "contoso", "act-1")
		var st tracked
		return err == nil && json.Unmarshal(data, &st) == nil && st.ActionID == ""
	}
	for !ended() && clock.Since(start) < 6*24*time.Hour {
		testwait.Waiters(t, clock, 1)
		clock.Advance(time.Hour)
	}
	final := 0
	for _, ev := range log.all() {
		if ev.Final {
			final++
		}
	}
	t.Logf("ended %v after %v, %d looks, %d final events", ended(), clock.Since(start), api.count(), final)
	if !ended() || final != 1 {
		t.Errorf("ended %v, %d final events; want ended, with one", ended(), final)
	}
}
