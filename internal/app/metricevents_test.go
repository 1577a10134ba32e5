package app

import (
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/contoso-secops/mde-offboard/internal/mde/mdesim"
)

// TestMetricsCountEachEventOnce: a 429, a 500, a dead letter and a request
// id sent again each move their counters once; the gauges settle at rest.
func TestMetricsCountEachEventOnce(t *testing.T) {
	t.Parallel()
	e := setup(t, envConfig{sim: mdesim.Options{Unlimited: true}, tenants: []string{"contoso", "fabrikam"}, machines: 3, noStart: true})
	e.opts.StatsEvery = 100 * time.Millisecond
	e.start()
	c := e.tenants["contoso"]
	e.sim.InjectStatus(c.tenantID, "offboard", http.StatusTooManyRequests, "", "", 1, 200*time.Millisecond)
	e.sim.InjectStatus(c.tenantID, "offboard", http.StatusInternalServerError, "", "", 1, 0)
	res := e.collect("mde.offboard.result.>")
	for i, m := range c.machines {
		id := fmt.Sprintf("r%d", i)
		e.publish("mde.offboard.request.contoso", map[string]any{"requestId": id, "machineId": m.ID}, "contoso:"+id)
	}
	e.publish("mde.offboard.request.contoso", map[string]any{"requestId": "bad", "machineId": "nope"}, "contoso:bad")
	res.wait(t, 4, 20*time.Second)
	// The same request id again, under another message id: answered from
	// the ledger, a result the results stream drops.
	e.publish("mde.offboard.request.contoso", map[string]any{"requestId": "r0", "machineId": c.machines[0].ID}, "contoso:r0:again")
	eventually(t, 10*time.Second, "the repeat taken", func() bool {
		return metricValue(t, e, "mde_offboard_requests_received_total", map[string]string{"tenant": "contoso"}) >= 5
	})
	eventually(t, 10*time.Second, "nothing in flight, nothing waiting", func() bool {
		return metricValue(t, e, "mde_offboard_in_flight_requests", nil) == 0 &&
			metricValue(t, e, "mde_offboard_backlog_requests", nil) == 0 &&
			metricValue(t, e, "mde_offboard_oldest_waiting_seconds", nil) == 0
	})

	for _, w := range []struct {
		name   string
		labels map[string]string
		want   float64
	}{
		{"mde_offboard_requests_received_total", map[string]string{"tenant": "fabrikam"}, 0},
		{"mde_offboard_results_total", map[string]string{"tenant": "contoso", "outcome": "created"}, 3},
		{"mde_offboard_results_total", map[string]string{"tenant": "contoso", "outcome": "failed", "code": "invalid_request"}, 1},
		{"mde_offboard_results_total", map[string]string{"tenant": "contoso"}, 4},
		{"mde_offboard_request_to_result_seconds", nil, 4},
		{"mde_offboard_api_calls_total", map[string]string{"tenant": "contoso", "api": "offboard", "status": "201"}, 3},
		{"mde_offboard_api_calls_total", map[string]string{"tenant": "contoso", "api": "offboard", "status": "429"}, 1},
		{"mde_offboard_api_calls_total", map[string]string{"tenant": "contoso", "api": "offboard", "status": "500"}, 1},
		{"mde_offboard_api_calls_total", map[string]string{"tenant": "contoso"}, float64(len(e.sim.Calls()))},
		{"mde_offboard_api_call_duration_seconds", map[string]string{"api": "offboard"}, 5},
		{"mde_offboard_throttled_total", map[string]string{"tenant": "contoso", "api": "offboard"}, 1},
		{"mde_offboard_throttled_total", nil, 1},
		{"mde_offboard_api_retries_total", map[string]string{"api": "offboard", "reason": "throttled"}, 1},
		{"mde_offboard_api_retries_total", map[string]string{"api": "offboard", "reason": "server_error"}, 1},
		{"mde_offboard_api_retries_total", nil, 2},
		{"mde_offboard_tenant_paused", nil, 0},
		{"mde_offboard_held_requests", nil, 0},
	} {
		if got := metricValue(t, e, w.name, w.labels); got != w.want {
			t.Errorf("%s%v = %v, want %v", w.name, w.labels, got, w.want)
		}
	}
	if got := metricValue(t, e, "mde_offboard_quota_remaining_calls", map[string]string{"tenant": "fabrikam", "api": "offboard", "window": "1m"}); got != 100 {
		t.Errorf("fabrikam's quota left = %v, want 100", got)
	}
}
