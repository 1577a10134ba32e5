package app

import (
	"encoding/json"
	"net/http"
	"testing"
	"time"

	"github.com/contoso-secops/mde-offboard/internal/mde/mdesim"
	"github.com/contoso-secops/mde-offboard/offboard"
)

// TestRetryAfterARetryFailedWithoutCalls: a request answered failed
// (api_error) after a call whose answer was lost, its action shown only
// after the worker's looks, then finished. Its retry fails before any
// call, as its look for that action is refused (403 on the device's
// actions): failed, forbidden, no call. The next retry went straight to
// a call, which the API took: a second action for the device. The
// earlier calls are carried into the failed retry's stored result, so
// that the next retry still looks for their action, and answers created
// with it.
func TestRetryAfterARetryFailedWithoutCalls(t *testing.T) {
	t.Parallel()
	for _, byName := range []bool{false, true} {
		retryAfterARetryFailedWithoutCalls(t, byName)
	}
}

func retryAfterARetryFailedWithoutCalls(t *testing.T, byName bool) {
	const hidden = 2 * time.Second
	e := setup(t, envConfig{machines: 1, tenants: []string{"contoso"}, noStart: true,
		sim: mdesim.Options{ActionVisibleAfter: hidden, ActionCompleteAfter: hidden}})
	e.opts.ActionShowsWithin = time.Second
	e.start()
	c := e.collect("mde.offboard.result.>")
	tt := e.tenants["contoso"]
	e.sim.LoseAnswers(tt.tenantID, 1)
	body := map[string]any{"requestId": "lost-2", "machineId": tt.machines[0].ID}
	if byName {
		body = map[string]any{"requestId": "lost-2", "computerDnsName": tt.machines[0].ComputerDNSName}
	}
	r := e.one(c, "mde.offboard.request.contoso", body)
	if r.Outcome != offboard.OutcomeFailed || len(e.sim.Actions(tt.tenantID)) != 1 {
		t.Fatalf("first attempt: %s %+v; want failed with the one action lists did not show yet", r.Outcome, r.Error)
	}
	eventually(t, 10*time.Second, "the action shown and finished", func() bool {
		a := e.sim.Actions(tt.tenantID)
		return len(a) == 1 && a[0].Status == "Succeeded"
	})
	time.Sleep(2 * e.opts.ActionShowsWithin) // the retry comes well after the call

	// The second attempt's look for the action is refused: failed, no call.
	e.sim.InjectStatus(tt.tenantID, mdesim.APIMachineActions, http.StatusForbidden, "Forbidden", "no permission", 1, 0)
	body["attempt"] = 2
	e.publish("mde.offboard.request.contoso", body, "contoso:lost-2:2")
	eventually(t, 20*time.Second, "the second attempt's result", func() bool { return len(c.snapshot()["contoso/lost-2"]) == 2 })
	r = c.snapshot()["contoso/lost-2"][1]
	if r.Outcome != offboard.OutcomeFailed || r.Error.Code != offboard.CodeForbidden {
		t.Fatalf("second attempt: %s %+v; want failed, forbidden", r.Outcome, r.Error)
	}

	if byName {
		e.sim.AddMachine(tt.tenantID, mdesim.Machine{ID: newID(), ComputerDNSName: tt.machines[0].ComputerDNSName, OSPlatform: "Windows11", LastSeen: time.Now()})
	}
	body["attempt"] = 3
	e.publish("mde.offboard.request.contoso", body, "contoso:lost-2:3")
	eventually(t, 20*time.Second, "the third attempt's result", func() bool { return len(c.snapshot()["contoso/lost-2"]) == 3 })
	r = c.snapshot()["contoso/lost-2"][2]
	actions := e.sim.Actions(tt.tenantID)
	var got struct{ ID string }
	_ = json.Unmarshal(r.MachineAction, &got)
	if len(actions) != 1 || r.Outcome != offboard.OutcomeCreated || got.ID != actions[0].ID {
		t.Errorf("third attempt (by name %v): %s %+v with %d actions; want created with the first attempt's action, and no second", byName, r.Outcome, r.Error, len(actions))
	}
}
