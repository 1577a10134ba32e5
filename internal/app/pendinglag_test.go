package app

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/contoso-secops/mde-offboard/internal/mde/mdesim"
	"github.com/contoso-secops/mde-offboard/offboard"
)

// TestDuplicateRefusedWhileTheActionLagsIsPending: two requests for one
// device under different request ids (a CMDB retirement event sent twice,
// once by id and once by name). The first creates the action; the
// second's call is refused ActiveRequestAlreadyExists while the fresh
// action is still missing from the device's list of actions, as it can
// be for a moment (MDE-API.md). The refusal says an offboard is pending:
// the second request must be answered already_pending with the first's
// action once the list shows it, not failed. Before, it was answered
// failed api_error, with a dead letter, after a few looks shorter than
// the lag.
func TestDuplicateRefusedWhileTheActionLagsIsPending(t *testing.T) {
	t.Parallel()
	const lag = 1500 * time.Millisecond // longer than the test's few looks (backoff of 20 to 200 ms)
	e := setup(t, envConfig{machines: 1, tenants: []string{"contoso"}, noStart: true,
		sim: mdesim.Options{ActionVisibleAfter: lag}})
	e.opts.ActionShowsWithin = 3 * lag
	e.start()
	c := e.collect("mde.offboard.result.>")
	m := e.tenants["contoso"].machines[0]
	first := e.one(c, "mde.offboard.request.contoso", map[string]any{"requestId": "cmdb-1", "machineId": m.ID})
	second := e.one(c, "mde.offboard.request.contoso", map[string]any{"requestId": "cmdb-2", "computerDnsName": m.ComputerDNSName})
	if first.Outcome != offboard.OutcomeCreated {
		t.Fatalf("first request: %s %+v, want created", first.Outcome, first.Error)
	}
	var a1, a2 struct{ ID string }
	_ = json.Unmarshal(first.MachineAction, &a1)
	_ = json.Unmarshal(second.MachineAction, &a2)
	if second.Outcome != offboard.OutcomeAlreadyPending || a2.ID != a1.ID {
		t.Errorf("second request: %s %+v, action %q; want already_pending with the first's action %q", second.Outcome, second.Error, a2.ID, a1.ID)
	}
	if n := len(e.sim.Actions(e.tenants["contoso"].tenantID)); n != 1 {
		t.Errorf("%d actions, want 1", n)
	}
}
