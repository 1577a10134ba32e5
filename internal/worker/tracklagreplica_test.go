package worker

import (
	"context"
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/jonboulle/clockwork"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"go.uber.org/zap"

	"github.com/contoso-secops/mde-offboard/internal/config"
	"github.com/contoso-secops/mde-offboard/internal/limiter"
	"github.com/contoso-secops/mde-offboard/internal/queue/natstest"
	"github.com/contoso-secops/mde-offboard/internal/testwait"
	"github.com/contoso-secops/mde-offboard/offboard"
)

// TestTrackingLagLeavesOutLooksAnotherReplicaMade: a replica that gets
// no quota for its looks (its clock off the NATS server's, its quota
// journal not read) holds the tenant's followed actions, which another
// replica looks at on time. Its lag says how overdue a look is, not how
// long it has waited for one that was made: the alert
// MdeOffboardTrackingBehind takes the most overdue of the replicas, and
// fired for every tracking tenant while their looks were on time. Before,
// the starved replica's lag grew with its wait, two hours in two hours.
func TestTrackingLagLeavesOutLooksAnotherReplicaMade(t *testing.T) {
	t.Parallel()
	const n = 5
	_, js := natstest.Connect(t)
	ledger := contosoLedger(t, js)
	start := time.Date(2026, 11, 24, 10, 0, 0, 0, time.UTC)
	clock := clockwork.NewFakeClockAt(start)
	cfg := config.Tracking{Enabled: true, FirstCheck: config.Duration(time.Minute),
		MaxInterval: config.Duration(10 * time.Minute), MaxAge: config.Duration(168 * time.Hour)}
	api := scriptedFor(clock, "Pending")
	looking := newTracker(trackerConfig{
		tenant: "contoso", store: ledger, actions: &api, clock: clock, log: zap.NewNop(), cfg: cfg,
		publish: (&eventLog{}).publish, subjects: offboard.Subjects{}, notFoundCheck: 3,
	})
	runTracker(t, looking)
	for i := range n {
		res := &offboard.Result{RequestID: fmt.Sprintf("r-%d", i), MachineID: fmt.Sprintf("%040x", i),
			MachineAction: json.RawMessage(fmt.Sprintf(`{"id":"act-%d","type":"Offboard","status":"Pending"}`, i))}
		if err := looking.track(t.Context(), res); err != nil {
			t.Fatal(err)
		}
	}
	m := NewMetrics(prometheus.NewRegistry())
	starved := newTracker(trackerConfig{
		tenant: "contoso", store: ledger, clock: clock, log: zap.NewNop(), cfg: cfg,
		actions: &starvedActions{fakeActions{clock: clock, windows: trackWindows}},
		publish: (&eventLog{}).publish, subjects: offboard.Subjects{}, notFoundCheck: 3,
		metrics: m, lagRefresh: 10 * time.Millisecond,
	})
	runTracker(t, starved)
	// Two hours in steps of 20 s, each once a tracker waits on the clock.
	for range 2 * 60 * 3 {
		wctx, wcancel := context.WithTimeout(t.Context(), time.Second)
		_ = clock.BlockUntilContext(wctx, 1)
		wcancel()
		clock.Advance(20 * time.Second)
	}
	if looks := api.count(); looks < 2*n*60/10 {
		t.Fatalf("%d looks in two hours at %d actions, want at least one each 10 min", looks, n)
	}
	lag := func() float64 { return testutil.ToFloat64(m.TrackingLag.WithLabelValues("contoso")) }
	t.Logf("%d looks; the starved replica's lag %.0fs", api.count(), lag())
	deadline := time.Now().Add(10 * time.Second)
	for lag() > (5 * time.Minute).Seconds() {
		if time.Now().After(deadline) {
			t.Fatalf("mde_offboard_tracking_lag_seconds = %.0f on the replica without quota, while the other looked at every action on time", lag())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestTrackingLagLeavesOutAnEndAnotherReplicaMade: a replica whose clock
// is off the NATS server's ends no action at maxAge; another replica, on
// time, ends them. Its lag says how overdue a look is, not how long ago
// an end it could not make was due: before, an action another replica
// had ended stayed in its lag, 50 minutes after an hour.
func TestTrackingLagLeavesOutAnEndAnotherReplicaMade(t *testing.T) {
	t.Parallel()
	_, js := natstest.Connect(t)
	ledger := contosoLedger(t, js)
	clock := clockwork.NewFakeClockAt(time.Date(2026, 11, 24, 10, 0, 0, 0, time.UTC))
	cfg := config.Tracking{Enabled: true, FirstCheck: config.Duration(time.Minute),
		MaxInterval: config.Duration(2 * time.Minute), MaxAge: config.Duration(10 * time.Minute)}
	api := scriptedFor(clock, "Pending")
	log := &eventLog{}
	ontime := newTracker(trackerConfig{
		tenant: "contoso", store: ledger, actions: &api, clock: clock, log: zap.NewNop(), cfg: cfg,
		publish: log.publish, subjects: offboard.Subjects{}, notFoundCheck: 3,
	})
	runTrackingPending(t, ontime)
	m := NewMetrics(prometheus.NewRegistry())
	// Its scans of the ledger come N / B apart: a day, as for thousands
	// of actions followed under the documented limits.
	off := newTracker(trackerConfig{
		tenant: "contoso", store: ledger, clock: clock, log: zap.NewNop(), cfg: cfg,
		actions: &starvedActions{fakeActions{clock: clock, windows: []limiter.Window{{Count: 2, Length: 24 * time.Hour}}}},
		publish: (&eventLog{}).publish, subjects: offboard.Subjects{}, notFoundCheck: 3,
		metrics: m, lagRefresh: 10 * time.Millisecond, clockOff: func() bool { return true },
	})
	runTracker(t, off)
	for range 60 * 3 { // an hour in steps of 20 s
		wctx, wcancel := context.WithTimeout(t.Context(), time.Second)
		_ = clock.BlockUntilContext(wctx, 2)
		wcancel()
		clock.Advance(20 * time.Second)
	}
	if evs := log.all(); len(evs) == 0 || !evs[len(evs)-1].Final {
		t.Fatalf("the replica on time ended nothing at maxAge: %d events", len(evs))
	}
	lag := func() float64 { return testutil.ToFloat64(m.TrackingLag.WithLabelValues("contoso")) }
	t.Logf("the lag of the replica whose clock is off: %.0fs", lag())
	deadline := time.Now().Add(10 * time.Second)
	for lag() > time.Minute.Seconds() {
		if time.Now().After(deadline) {
			t.Fatalf("mde_offboard_tracking_lag_seconds = %.0f on the replica whose clock is off, an action the other ended held as overdue", lag())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestTrackingWaitForQuotaSeesAnotherReplicasClaimSoon: a replica that
// waits for quota for a look another replica claims meanwhile (both read
// the action due at the same moment) lets it go within a fraction of a
// second, not at the next refresh of the gauges (5 s): a replica without
// quota spent up to 5 s on each look the others made, and fell behind,
// its lag growing, when they made more than 12 a minute.
func TestTrackingWaitForQuotaSeesAnotherReplicasClaimSoon(t *testing.T) {
	t.Parallel()
	_, js := natstest.Connect(t)
	ledger := contosoLedger(t, js)
	start := time.Date(2026, 11, 24, 10, 0, 0, 0, time.UTC)
	clock := clockwork.NewFakeClockAt(start)
	st := oneTracked(t, ledger, start)
	api := &waitingActions{starvedActions{fakeActions{clock: clock, windows: trackWindows}}, make(chan struct{}, 1)}
	tr := newTracker(trackerConfig{
		tenant: "contoso", store: ledger, clock: clock, log: zap.NewNop(), actions: api,
		cfg: config.Tracking{Enabled: true, FirstCheck: config.Duration(time.Minute),
			MaxInterval: config.Duration(time.Hour), MaxAge: config.Duration(168 * time.Hour)},
		publish: (&eventLog{}).publish, subjects: offboard.Subjects{}, notFoundCheck: 3,
		metrics: NewMetrics(prometheus.NewRegistry()), lagRefresh: 5 * time.Second,
	})
	runTracker(t, tr)
	testwait.For(t, api.waiting, 10*time.Second, "the look waiting for quota")
	// Another replica claims the look.
	_, rev, err := ledger.TrackedState(t.Context(), "contoso", st.ActionID)
	if err != nil {
		t.Fatal(err)
	}
	st.Next = start.Add(time.Minute)
	data, err := json.Marshal(st)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ledger.TrackOver(t.Context(), "contoso", st.ActionID, data, rev); err != nil {
		t.Fatal(err)
	}
	claimed := time.Now()
	for {
		tr.mu.Lock()
		held := len(tr.queue) == 1 && tr.queue[0].Next.Equal(st.Next)
		tr.mu.Unlock()
		if held {
			break
		}
		if time.Since(claimed) > 2*time.Second {
			t.Fatalf("the look another replica claimed still waited for quota here %v after the claim", time.Since(claimed))
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Logf("let go %v after the other replica's claim", time.Since(claimed).Round(time.Millisecond))
}
