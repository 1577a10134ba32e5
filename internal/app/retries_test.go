package app

import (
	"net/http"
	"testing"
	"time"

	"github.com/contoso-secops/mde-offboard/internal/mde/mdesim"
)

// TestRetriesCountCallsRepeated: mde_offboard_api_retries_total counts a
// call made again, not a lost answer whose action the recheck finds: that
// request ends there, with no second offboard call.
func TestRetriesCountCallsRepeated(t *testing.T) {
	t.Parallel()
	e := setup(t, envConfig{sim: mdesim.Options{Unlimited: true}, tenants: []string{"contoso"}, machines: 2})
	res := e.collect("mde.offboard.result.>")
	c := e.tenants["contoso"]
	// The action made, its answer lost (504): the recheck finds it.
	e.sim.LoseAnswers(c.tenantID, 1)
	e.publish("mde.offboard.request.contoso", map[string]any{"requestId": "lost", "machineId": c.machines[0].ID}, "contoso:lost")
	got := res.wait(t, 1, 20*time.Second)
	if r := got["contoso/lost"]; len(r) == 0 || r[0].MachineAction == nil {
		t.Fatalf("contoso/lost: %+v, want its action", r)
	}
	calls := 0
	for _, call := range e.sim.Calls() {
		if call.API == "offboard" {
			calls++
		}
	}
	if calls != 1 {
		t.Fatalf("%d offboard calls, want 1", calls)
	}
	if v := metricValue(t, e, "mde_offboard_api_retries_total", nil); v != 0 {
		t.Errorf("api_retries_total = %v, want 0: no call was made again", v)
	}

	// A 500 is made again: counted once.
	e.sim.InjectStatus(c.tenantID, "offboard", http.StatusInternalServerError, "", "", 1, 0)
	e.publish("mde.offboard.request.contoso", map[string]any{"requestId": "again", "machineId": c.machines[1].ID}, "contoso:again")
	res.wait(t, 2, 20*time.Second)
	if v := metricValue(t, e, "mde_offboard_api_retries_total", map[string]string{"api": "offboard", "reason": "server_error"}); v != 1 {
		t.Errorf("api_retries_total{server_error} = %v after a 500 made again, want 1", v)
	}
}
