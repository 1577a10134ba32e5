package worker

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/contoso-secops/mde-offboard/internal/mde/mdesim"
)

// disputedTenants is an assignment under which no replica works any
// tenant: a live replica's tenants file gives each name another Entra
// tenant or application (queue.Presence).
type disputedTenants struct{}

func (disputedTenants) Assigned(string) bool     { return false }
func (disputedTenants) Changed() <-chan struct{} { return nil }
func (disputedTenants) Disputed(string) string {
	return "replica r-2 serves it with another Entra tenant or application"
}

// TestTrackingLooksAtNothingWhileTheTenantIsDisputed: while another
// replica's tenants file gives the tenant's name another Entra tenant or
// application, neither works the tenant, and neither looks at its
// followed actions: with the other's credentials, the API would answer
// its own 404 for an action of this one's tenant, and four of them gave
// the action up as gone, with a final event and an ended mark, before
// the files agreed again. Before, the action was looked at (4 looks) and
// given up within minutes.
func TestTrackingLooksAtNothingWhileTheTenantIsDisputed(t *testing.T) {
	t.Parallel()
	e := setupLoopOpts(t, `["100/1m"]`, `    tracking:
      enabled: true
`, RetryPolicy{}, func(o *Options) { o.Assignment = disputedTenants{} })
	ctx := t.Context()
	now := e.clock.Now()
	st, err := json.Marshal(tracked{RequestID: "r-0", MachineID: loopMachine, ActionID: "act-elsewhere",
		Status: "Pending", Since: now, Next: now, Interval: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	if err := e.w.opts.Ledger.TrackNew(ctx, "contoso", "act-elsewhere", st); err != nil {
		t.Fatal(err)
	}
	looks := func() int {
		n := 0
		for _, c := range e.sim.Calls() {
			if c.API == mdesim.APIMachineActions && strings.Contains(c.Path, "act-elsewhere") {
				n++
			}
		}
		return n
	}
	// Half an hour on the worker's clock, a minute at a time: a scan
	// finds the action within five minutes, due at once.
	for range 30 {
		e.clock.Advance(time.Minute)
		time.Sleep(30 * time.Millisecond) // lets the tracker take each minute in turn
	}
	data, _, err := e.w.opts.Ledger.TrackedState(ctx, "contoso", "act-elsewhere")
	if err != nil {
		t.Fatal(err)
	}
	var after tracked
	_ = json.Unmarshal(data, &after)
	if n := looks(); n > 0 || after.ActionID == "" {
		t.Errorf("%d looks at the action while its tenant was disputed; followed still: %v", n, after.ActionID != "")
	}
	// The look held is overdue, and the lag says so.
	if lag := testutil.ToFloat64(e.w.m.TrackingLag.WithLabelValues("contoso")); lag <= 0 {
		t.Errorf("mde_offboard_tracking_lag_seconds = %.0f with the action's look held for minutes", lag)
	}
}
