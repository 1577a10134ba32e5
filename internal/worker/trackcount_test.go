package worker

import (
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/jonboulle/clockwork"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"go.uber.org/zap"

	"github.com/contoso-secops/mde-offboard/internal/config"
	"github.com/contoso-secops/mde-offboard/internal/queue/natstest"
	"github.com/contoso-secops/mde-offboard/internal/testwait"
	"github.com/contoso-secops/mde-offboard/offboard"
)

// TestTrackedActionsGaugeWhileALookWaitsForQuota: while a look waits for
// quota the offboard lookups take, the actions created meanwhile are
// followed, and mde_offboard_tracked_actions counts them. Before, it was
// set only between looks: it kept the count it had when the look came
// due, for as long as the wait lasted (hours).
func TestTrackedActionsGaugeWhileALookWaitsForQuota(t *testing.T) {
	t.Parallel()
	const created = 5
	_, js := natstest.Connect(t)
	clock := clockwork.NewFakeClockAt(time.Date(2026, 11, 24, 10, 0, 0, 0, time.UTC))
	api := &waitingActions{starvedActions{fakeActions{clock: clock, windows: trackWindows}}, make(chan struct{}, 1)}
	m := NewMetrics(prometheus.NewRegistry())
	tr := newTracker(trackerConfig{
		tenant: "contoso", store: contosoLedger(t, js), actions: api, clock: clock, log: zap.NewNop(),
		cfg: config.Tracking{Enabled: true, FirstCheck: config.Duration(time.Minute),
			MaxInterval: config.Duration(time.Hour), MaxAge: config.Duration(168 * time.Hour)},
		publish: (&eventLog{}).publish, subjects: offboard.Subjects{}, notFoundCheck: 3,
		metrics: m, lagRefresh: 10 * time.Millisecond,
	})
	runTrackingPending(t, tr)
	testwait.Waiters(t, clock, 1)
	clock.Advance(time.Hour)
	testwait.For(t, api.waiting, 10*time.Second, "the first look waiting for quota")
	for i := range created {
		res := &offboard.Result{RequestID: fmt.Sprintf("r-%d", i+2), MachineID: fmt.Sprintf("%040x", i+2),
			MachineAction: json.RawMessage(fmt.Sprintf(`{"id":"act-%d","type":"Offboard","status":"Pending"}`, i+2))}
		if err := tr.track(t.Context(), res); err != nil {
			t.Fatal(err)
		}
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		got := testutil.ToFloat64(m.TrackedActions.WithLabelValues("contoso"))
		if got == created+1 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("mde_offboard_tracked_actions = %.0f while a look waits for quota, %d actions followed", got, created+1)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
