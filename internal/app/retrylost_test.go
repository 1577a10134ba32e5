package app

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/contoso-secops/mde-offboard/internal/mde/mdesim"
	"github.com/contoso-secops/mde-offboard/offboard"
)

// TestRetryOfAFailedCallLooksForItsAction: a request whose call's answer
// was lost, and whose action lists showed only after the worker's looks
// (later than ActionShowsWithin after the call), is answered failed
// (api_error) while the action exists. The device
// takes the action and it finishes. A retry of the request (offboardctl
// dead retry, as the runbook for api_error says) went straight to a call,
// which the API takes, the first action no longer pending: a second
// action for the device. The retry now looks for the action its request's
// earlier calls made, and answers created with it.
//
// A retry by name stays on the device its earlier calls went to: the name,
// given to a newer record meanwhile (a device re-imaged), is not looked up
// again.
func TestRetryOfAFailedCallLooksForItsAction(t *testing.T) {
	t.Parallel()
	for _, byName := range []bool{false, true} {
		retryOfAFailedCall(t, byName)
	}
}

func retryOfAFailedCall(t *testing.T, byName bool) {
	const hidden = 3 * time.Second
	e := setup(t, envConfig{machines: 1, tenants: []string{"contoso"}, noStart: true, sim: mdesim.Options{ActionVisibleAfter: hidden, ActionCompleteAfter: hidden}})
	// The first attempt looks for its action for as long as a new one may
	// take to show: shorter here than the action takes, so that it ends
	// failed.
	e.opts.ActionShowsWithin = time.Second
	e.start()
	c := e.collect("mde.offboard.result.>")
	tt := e.tenants["contoso"]
	e.sim.LoseAnswers(tt.tenantID, 1)
	body := map[string]any{"requestId": "lost-1", "machineId": tt.machines[0].ID}
	if byName {
		body = map[string]any{"requestId": "lost-1", "computerDnsName": tt.machines[0].ComputerDNSName}
	}
	r := e.one(c, "mde.offboard.request.contoso", body)
	actions := e.sim.Actions(tt.tenantID)
	if r.Outcome != offboard.OutcomeFailed || len(actions) != 1 {
		t.Fatalf("first attempt: %s %+v with %d actions; want failed with the one action lists did not show yet", r.Outcome, r.Error, len(actions))
	}
	t.Logf("first attempt: failed %s after %d calls: %s", r.Error.Code, r.Attempts, r.Error.Message)
	eventually(t, 10*time.Second, "the action shown and finished", func() bool {
		a := e.sim.Actions(tt.tenantID)
		return len(a) == 1 && a[0].Status == "Succeeded"
	})

	if byName {
		e.sim.AddMachine(tt.tenantID, mdesim.Machine{ID: newID(), ComputerDNSName: tt.machines[0].ComputerDNSName, OSPlatform: "Windows11", LastSeen: time.Now()})
	}
	body["attempt"] = 2
	e.publish("mde.offboard.request.contoso", body, "contoso:lost-1:2")
	eventually(t, 20*time.Second, "the retry's result", func() bool { return len(c.snapshot()["contoso/lost-1"]) == 2 })
	r = c.snapshot()["contoso/lost-1"][1]
	actions = e.sim.Actions(tt.tenantID)
	var got struct{ ID string }
	_ = json.Unmarshal(r.MachineAction, &got)
	if len(actions) != 1 || r.Outcome != offboard.OutcomeCreated || got.ID != actions[0].ID {
		t.Errorf("retry (by name %v): %s %+v with %d actions; want created with the first attempt's action, and no second", byName, r.Outcome, r.Error, len(actions))
	}
}
