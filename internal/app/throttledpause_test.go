package app

import (
	"math"
	"net/http"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/contoso-secops/mde-offboard/internal/mde"
)

// TestThrottledPauseShowsItsEnd: a 429 naming a 30-minute Retry-After
// shows as mde_offboard_throttled_until_timestamp_seconds, the pause's
// end, on the replica that got it and on another that learns of it from
// the quota journal. The alerts read it: MdeOffboardThrottled stays on,
// and MdeOffboardBacklogNotDraining quiet, for the pause's length.
// Before, no metric told the pause: the throttling alert cleared 10
// minutes after the 429, and the backlog alert paged 20 minutes after
// the last result, during the API's own pause.
func TestThrottledPauseShowsItsEnd(t *testing.T) {
	t.Parallel()
	const pause = 30 * time.Minute
	e := setup(t, envConfig{tenants: []string{"contoso"}, machines: 1, noStart: true})
	e.opts.StatsEvery = 100 * time.Millisecond
	e.start()
	_, other := e.replica()
	tt := e.tenants["contoso"]
	until := func(reg *prometheus.Registry) float64 {
		return gaugeOf(t, reg, "mde_offboard_throttled_until_timestamp_seconds", map[string]string{"tenant": "contoso"})
	}
	if got := until(e.reg); got != 0 {
		t.Errorf("before any 429: %v, want 0", got)
	}
	e.sim.InjectStatus(tt.tenantID, mde.APIOffboard, http.StatusTooManyRequests, "429", "API calls quota exceeded! maximum allowed 1500 per 01:00:00", 1, pause)
	before := time.Now()
	e.offboardEach("contoso", "p-", 0, 1)
	eventually(t, 10*time.Second, "the 429's pause shown on both replicas", func() bool {
		return until(e.reg) > 0 && until(other) > 0
	})
	after := time.Now()
	for name, reg := range map[string]*prometheus.Registry{"the replica that got the 429": e.reg, "the other replica": other} {
		got := until(reg)
		// A second either way: the server's Date and the journal's clock
		// offset allowance move the end by less than that.
		low, high := float64(before.Add(pause).UnixNano())/1e9-1, float64(after.Add(pause).UnixNano())/1e9+1
		if got < low || got > high || math.IsNaN(got) {
			t.Errorf("%s: pause ends at %v, want between %v and %v (the 429's time plus 30 minutes)", name, got, low, high)
		}
	}
}
