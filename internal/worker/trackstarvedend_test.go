package worker

import (
	"context"
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/jonboulle/clockwork"
	"go.uber.org/zap"

	"github.com/contoso-secops/mde-offboard/internal/config"
	"github.com/contoso-secops/mde-offboard/internal/queue/natstest"
	"github.com/contoso-secops/mde-offboard/internal/testwait"
	"github.com/contoso-secops/mde-offboard/offboard"
)

// TestTrackingEndsAtMaxAgeWhileALookWaitsForQuota: while the offboard
// lookups take every machineactions call tracking could have, the look
// at act-1 waits for quota; act-1, and act-2 followed a minute later,
// are given up at maxAge (10 min) all the same, each with its final
// event: ending takes no quota. Before, nothing ended while the look
// waited: the tracker's one loop waited with it.
func TestTrackingEndsAtMaxAgeWhileALookWaitsForQuota(t *testing.T) {
	t.Parallel()
	_, js := natstest.Connect(t)
	clock := clockwork.NewFakeClockAt(time.Date(2026, 11, 24, 10, 0, 0, 0, time.UTC))
	api := &waitingActions{starvedActions{fakeActions{clock: clock, windows: trackWindows}}, make(chan struct{}, 1)}
	log := &eventLog{}
	tr := newTracker(trackerConfig{
		tenant: "contoso", store: contosoLedger(t, js), actions: api, clock: clock, log: zap.NewNop(),
		cfg: config.Tracking{Enabled: true, FirstCheck: config.Duration(time.Minute),
			MaxInterval: config.Duration(time.Hour), MaxAge: config.Duration(10 * time.Minute)},
		publish: log.publish, subjects: offboard.Subjects{}, notFoundCheck: 3, lagRefresh: 10 * time.Millisecond,
	})
	runTrackingPending(t, tr)
	testwait.Waiters(t, clock, 1)
	clock.Advance(time.Minute)
	testwait.For(t, api.waiting, 10*time.Second, "the look at act-1 waiting for quota")
	res := &offboard.Result{RequestID: "r-2", MachineID: fmt.Sprintf("%040x", 2),
		MachineAction: json.RawMessage(`{"id":"act-2","type":"Offboard","status":"Pending"}`)}
	if err := tr.track(t.Context(), res); err != nil {
		t.Fatal(err)
	}
	final := func() map[string]bool {
		out := map[string]bool{}
		for _, ev := range log.all() {
			if ev.Final {
				out[ev.ActionID] = true
			}
		}
		return out
	}
	deadline := time.Now().Add(10 * time.Second)
	for len(final()) < 2 && clock.Since(time.Date(2026, 11, 24, 10, 0, 0, 0, time.UTC)) < time.Hour {
		if time.Now().After(deadline) {
			break
		}
		// The look waits for quota; once it is due, the end waits on
		// the clock.
		wctx, wcancel := context.WithTimeout(t.Context(), 20*time.Millisecond)
		_ = clock.BlockUntilContext(wctx, 1)
		wcancel()
		clock.Advance(10 * time.Second)
	}
	t.Logf("final events of %v by %v", final(), clock.Since(time.Date(2026, 11, 24, 10, 0, 0, 0, time.UTC)))
	if got := final(); !got["act-1"] || !got["act-2"] {
		t.Errorf("final events of %v by %v, want act-1 and act-2 at maxAge (10 min)", got, clock.Since(time.Date(2026, 11, 24, 10, 0, 0, 0, time.UTC)))
	}
}
