package worker

import (
	"net/http"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/contoso-secops/mde-offboard/internal/mde"
	"github.com/contoso-secops/mde-offboard/offboard"
)

// TestLastThrottlePausesTheTenant: the 429 that uses up a call's throttle
// retries fails the request, and still pauses the tenant for its
// Retry-After and counts in mde_offboard_throttled_total, as every 429
// does: the next request must not call straight into the throttling.
func TestLastThrottlePausesTheTenant(t *testing.T) {
	t.Parallel()
	e := setupLoop(t, `["100/1m"]`, RetryPolicy{Throttles: 1})
	e.sim.InjectStatus(loopTenantID, mde.APIOffboard, http.StatusTooManyRequests, "429",
		"API calls quota exceeded! maximum allowed 100 per 00:01:00", 1, time.Hour)
	e.publish(t, "r-1")
	if r := e.nextResult(t, "r-1"); r.Outcome != offboard.OutcomeFailed || r.Error == nil || r.Error.Code != offboard.CodeAPIError {
		t.Fatalf("result %s %+v, want failed api_error", r.Outcome, r.Error)
	}
	if v := testutil.ToFloat64(e.w.m.Throttled.WithLabelValues("contoso", mde.APIOffboard)); v != 1 {
		t.Errorf("mde_offboard_throttled_total{contoso,offboard} = %v, want 1", v)
	}
	if until := e.w.tenants["contoso"].limits.PausedUntil(); until.Before(e.clock.Now().Add(59 * time.Minute)) {
		t.Errorf("tenant paused until %v, want the 429's Retry-After, an hour from %v", until, e.clock.Now())
	}
}
