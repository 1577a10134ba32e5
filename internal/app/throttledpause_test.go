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
	const requests = 12 // more than are taken at once (twice maxInFlight): some wait in the stream
	e := setup(t, envConfig{tenants: []string{"contoso"}, machines: requests, noStart: true})
	e.opts.StatsEvery = 100 * time.Millisecond
	e.start()
	second, other := e.replica()
	tt := e.tenants["contoso"]
	until := func(reg *prometheus.Registry) float64 {
		return gaugeOf(t, reg, "mde_offboard_throttled_until_timestamp_seconds", map[string]string{"tenant": "contoso"})
	}
	if got := until(e.reg); got != 0 {
		t.Errorf("before any 429: %v, want 0", got)
	}
	// Both replicas scraped, as Prometheus does: either may serve the
	// tenant and get the 429.
	var sc scraped
	start := time.Now()
	scrapeBoth := func(at time.Time) {
		sc.scrapeOf(t, e.app, "10.0.0.1:9090", at)
		sc.scrapeOf(t, second, "10.0.0.2:9090", at)
	}
	scrapeBoth(start)
	e.sim.InjectStatus(tt.tenantID, mde.APIOffboard, http.StatusTooManyRequests, "429", "API calls quota exceeded! maximum allowed 1500 per 01:00:00", 1, pause)
	before := time.Now()
	e.offboardEach("contoso", "p-", 0, requests)
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

	// The requests wait for the pause's end, in the stream and taken.
	// Scraped each minute for 20 minutes (what it shows does not change
	// meanwhile), the alerts' expressions read by Prometheus' query
	// engine: the throttling alert is still on 20 minutes after the 429,
	// and the backlog alert, whose 15 minutes without a result have
	// passed, quiet.
	eventually(t, 5*time.Second, "requests waiting in the stream", func() bool {
		return metricValue(t, e, "mde_offboard_backlog_requests", map[string]string{"tenant": "contoso", "priority": "normal"}) > 0 &&
			gaugeOf(t, other, "mde_offboard_backlog_requests", map[string]string{"tenant": "contoso", "priority": "normal"}) > 0
	})
	for i := 1; i <= 20; i++ {
		scrapeBoth(start.Add(time.Duration(i) * time.Minute))
	}
	at := start.Add(20 * time.Minute)
	if got := sc.eval(t, alertExpr(t, "MdeOffboardThrottled"), at); len(got) != 1 || got[0].Metric.Get("api") != mde.APIOffboard {
		t.Errorf("MdeOffboardThrottled 20 minutes into the pause: %v, want contoso's offboard", got)
	}
	if got := sc.eval(t, alertExpr(t, "MdeOffboardBacklogNotDraining"), at); len(got) != 0 {
		t.Errorf("MdeOffboardBacklogNotDraining 20 minutes into the pause: %v, want none", got)
	}
}
