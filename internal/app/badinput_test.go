package app

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"github.com/contoso-secops/mde-offboard/offboard"
)

// TestBlankCommentGetsTheTemplate: a comment of white space alone, which
// the API refuses (MissingRequiredParameter), counts as absent: the
// device is offboarded with the tenant's comment, and no call is refused.
func TestBlankCommentGetsTheTemplate(t *testing.T) {
	t.Parallel()
	e := setup(t, envConfig{tenants: []string{"contoso"}, machines: 1})
	c := e.collect("mde.offboard.result.>")
	m := e.tenants["contoso"].machines[0]
	r := e.one(c, "mde.offboard.request.contoso", map[string]any{"requestId": "blank-1", "machineId": m.ID, "comment": " \u00a0\u3000 ", "source": "cmdb"})
	if r.Outcome != offboard.OutcomeCreated {
		t.Fatalf("blank comment: %+v (error %+v), want created", r, r.Error)
	}
	var a struct {
		RequestorComment string `json:"requestorComment"`
	}
	if err := json.Unmarshal(r.MachineAction, &a); err != nil {
		t.Fatal(err)
	}
	if want := "Offboarded by mde-offboard: cmdb blank-1"; a.RequestorComment != want {
		t.Errorf("the action's comment is %q, want the tenant's %q", a.RequestorComment, want)
	}
	for _, call := range e.sim.Calls() {
		if call.API == "offboard" && call.Status != http.StatusCreated {
			t.Errorf("offboard call answered %d: the API was sent a comment it refuses", call.Status)
		}
	}
}

// TestNameWithAFinalDot: a computerDnsName with a final dot (a fully
// qualified name, which the request's form allows) names the device
// Defender lists without it: the request offboards that device, and a dry
// run finds it. The lookup used to ask the API for the name with its dot,
// which no device has, and the request failed machine_not_found.
func TestNameWithAFinalDot(t *testing.T) {
	t.Parallel()
	e := setup(t, envConfig{tenants: []string{"contoso"}, machines: 2})
	c := e.collect("mde.offboard.result.>")
	ms := e.tenants["contoso"].machines
	r := e.one(c, "mde.offboard.request.contoso", map[string]any{"requestId": "dot-1", "computerDnsName": ms[0].ComputerDNSName + "."})
	if r.Outcome != offboard.OutcomeCreated || r.MachineID != ms[0].ID {
		t.Errorf("name with a final dot: %+v (error %+v), want created for %s", r, r.Error, ms[0].ID)
	}
	r = e.one(c, "mde.offboard.request.contoso", map[string]any{"requestId": "dot-2", "computerDnsName": strings.ToUpper(ms[1].ComputerDNSName) + ".", "dryRun": true})
	if r.Outcome != offboard.OutcomeDryRun || r.MachineID != ms[1].ID {
		t.Errorf("dry run of a name with a final dot: %+v (error %+v), want dry_run for %s", r, r.Error, ms[1].ID)
	}
}
