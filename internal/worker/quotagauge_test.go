package worker

import (
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/contoso-secops/mde-offboard/internal/mde"
)

// TestQuotaGaugesOfTwoWindowsOfOneLength: two limits of one window length
// ("3/1m" and "5/60s") have one window label, 1m, and so one series of
// each quota gauge. The last written took it: the looser limit, 5 calls
// with 4 left after a call, where the tighter one lets 2 more start. The
// series shows the tighter, which alone decides when a call may start.
func TestQuotaGaugesOfTwoWindowsOfOneLength(t *testing.T) {
	t.Parallel()
	e := setupLoop(t, `["3/1m", "5/60s"]`, RetryPolicy{})
	limit := e.w.m.QuotaLimit.WithLabelValues("contoso", mde.APIOffboard, "1m")
	if got := testutil.ToFloat64(limit); got != 3 {
		t.Errorf("mde_offboard_quota_limit_calls{window=1m} = %v, want 3", got)
	}
	e.publish(t, "r-1")
	e.wantCreated(t, "r-1")
	remaining := e.w.m.QuotaRemaining.WithLabelValues("contoso", mde.APIOffboard, "1m")
	deadline := time.Now().Add(5 * time.Second)
	for {
		e.w.kickStats()
		got := testutil.ToFloat64(remaining)
		if got == 2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("mde_offboard_quota_remaining_calls{window=1m} = %v after a call, want 2", got)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
