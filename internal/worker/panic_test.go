package worker

import (
	"context"
	"testing"
	"time"

	"github.com/jonboulle/clockwork"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/contoso-secops/mde-offboard/internal/limiter"
	"github.com/contoso-secops/mde-offboard/internal/mde"
	"github.com/contoso-secops/mde-offboard/offboard"
)

// TestPanicBeforeTheCallGivesThePermitBack: the last look before a call
// goes out (the device's guards, its budget, the ledger) panics. The
// request's handler recovers, but the call was never sent: its place in
// the window must come back, as it does when the call itself panics.
// Before, it stayed taken for good, one place less for the tenant at
// every such panic.
func TestPanicBeforeTheCallGivesThePermitBack(t *testing.T) {
	t.Parallel()
	epoch := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	clock := clockwork.NewFakeClockAt(epoch)
	lt := limiter.NewTenant(clock)
	l := lt.Add(mde.APIOffboard, []limiter.Window{{Count: 1, Length: time.Second}})
	c := newCaller(clock, NewMetrics(prometheus.NewRegistry()), RetryPolicy{}, 1)
	tr := &tenantRun{name: "contoso", limits: lt}
	p, _ := l.TryAcquire(clock.Now())
	if p == nil {
		t.Fatal("no permit")
	}
	func() {
		defer func() { _ = recover() }()
		_, _, _ = c.sendChecked(t.Context(), tr, mde.APIOffboard, p,
			func(context.Context) *mde.Verdict { t.Error("the call went out"); return nil },
			func(context.Context) (*offboard.Result, error) { panic("guard") }, nil)
	}()
	clock.Advance(time.Hour)
	if q, _ := l.TryAcquire(clock.Now()); q == nil {
		t.Fatalf("no permit an hour after a call that never went out: remaining %v", l.Remaining(clock.Now()))
	}
}
