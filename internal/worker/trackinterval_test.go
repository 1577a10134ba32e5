package worker

import (
	"context"
	"encoding/json"
	"math"
	"slices"
	"testing"
	"time"

	"github.com/jonboulle/clockwork"
	"go.uber.org/zap"

	"github.com/contoso-secops/mde-offboard/internal/config"
	"github.com/contoso-secops/mde-offboard/internal/limiter"
	"github.com/contoso-secops/mde-offboard/internal/mde"
	"github.com/contoso-secops/mde-offboard/internal/queue/natstest"
	"github.com/contoso-secops/mde-offboard/offboard"
)

// TestTrackingIntervalFromTheLedgerStaysBounded: a followed action whose
// stored interval no tenants file allows now (written before firstCheck
// and maxInterval were bounded: 0, negative, or so long that doubled it
// wraps round) is looked at no more often than the interval allows and
// no later than maxInterval. Doubled as it was, the longest wrapped round
// to a negative interval and the others stayed at or under zero: a look
// as often as the quota let one through, until maxAge.
func TestTrackingIntervalFromTheLedgerStaysBounded(t *testing.T) {
	t.Parallel()
	for name, interval := range map[string]time.Duration{
		"longest": math.MaxInt64, "over half the longest": config.MaxTrackingInterval + 1,
		"zero": 0, "negative": -time.Minute,
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			api := trackStoredInterval(t, interval, 2*time.Hour)
			api.mu.Lock()
			looks := slices.Clone(api.looks["act-1"])
			api.mu.Unlock()
			if interval > 0 {
				// Due at the start, then at maxAge (maxInterval is the
				// longest allowed): one look in two hours.
				if len(looks) != 1 {
					t.Errorf("%d looks in two hours at an action stored with an interval of %v, want 1", len(looks), interval)
				}
				return
			}
			// From the shortest interval allowed, doubling up to
			// maxInterval (1 h): a look every hour by the end.
			if n := len(looks); n < 2 || n > 20 || looks[n-1].Sub(looks[n-2]) < 30*time.Minute {
				t.Errorf("%d looks in two hours at an action stored with an interval of %v, want at most 20, the last an hour apart", n, interval)
			}
		})
	}
}

// trackStoredInterval follows one Pending action stored in the ledger
// with the given interval, due at once, for d, and returns its looks.
func trackStoredInterval(t *testing.T, interval, d time.Duration) *fakeActions {
	t.Helper()
	_, js := natstest.Connect(t)
	ledger := contosoLedger(t, js)
	start := time.Date(2026, 11, 24, 10, 0, 0, 0, time.UTC)
	st := tracked{RequestID: "r-1", MachineID: "1e5bc9d7e413ddd7902c2932e418702b84d0cc07", ActionID: "act-1",
		Status: "Pending", Since: start, Next: start, Interval: interval}
	data, err := json.Marshal(st)
	if err != nil {
		t.Fatal(err)
	}
	if err := ledger.TrackNew(t.Context(), "contoso", st.ActionID, data); err != nil {
		t.Fatal(err)
	}
	clock := clockwork.NewFakeClockAt(start)
	api := &fakeActions{clock: clock, windows: trackWindows, looks: map[string][]time.Time{},
		lim: limiter.NewTenant(clock).Add(mde.APIMachineActions, trackWindows)}
	tr := newTracker(trackerConfig{
		tenant: "contoso", store: ledger, actions: api, clock: clock, log: zap.NewNop(),
		cfg: config.Tracking{Enabled: true, FirstCheck: config.Duration(time.Minute),
			MaxInterval: config.Duration(config.MaxTrackingInterval), MaxAge: config.Duration(168 * time.Hour)},
		publish:  func(context.Context, string, string, []byte) error { return nil },
		subjects: offboard.Subjects{}, notFoundCheck: 3,
	})
	if interval <= 0 {
		tr.cfg.MaxInterval = config.Duration(time.Hour)
	}
	runTracker(t, tr)
	e := &trackEnv{t: t, clock: clock, start: start}
	e.runFor(d, 10*time.Second, func(time.Time) {})
	return api
}
