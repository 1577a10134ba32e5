package app

import (
	"testing"
	"time"

	"github.com/contoso-secops/mde-offboard/internal/config"
	"github.com/contoso-secops/mde-offboard/internal/mde/mdesim"
	"github.com/contoso-secops/mde-offboard/offboard"
)

// TestGuardsTagInGermanCapitals: a device tagged, or grouped, in German
// capitals ("AUSSENDIENST" for the protected "Außendienst") is refused,
// by id, by name, dry run and bulk included, and never offboarded; an
// unprotected device next to it is. It used to be offboarded.
func TestGuardsTagInGermanCapitals(t *testing.T) {
	t.Parallel()
	long := time.Now().Add(-90 * 24 * time.Hour)
	tagged := mdesim.Machine{ID: newID(), ComputerDNSName: "pc-aussen.contoso.local", LastSeen: long, MachineTags: []string{"AUSSENDIENST"}}
	grouped := mdesim.Machine{ID: newID(), ComputerDNSName: "pc-gross.contoso.local", LastSeen: long, RbacGroupName: "GROSSKUNDEN", RbacGroupID: 4}
	other := mdesim.Machine{ID: newID(), ComputerDNSName: "pc-other.contoso.local", LastSeen: long, MachineTags: []string{"Innendienst"}}
	e := setup(t, envConfig{tenants: []string{"contoso"}, tweak: func(f *config.File) {
		f.Tenants[0].Guards = parseGuards(t, `
    guards:
      protect:
        machineTags: ["Außendienst"]
        rbacGroups: ["Großkunden"]
`)
	}})
	tn := e.tenants["contoso"].tenantID
	for _, m := range []mdesim.Machine{tagged, grouped, other} {
		e.sim.AddMachine(tn, m)
	}
	c := e.collect("mde.offboard.result.>")
	for _, tc := range []struct {
		id, subject string
		m           mdesim.Machine
		body        map[string]any
		rule        string
	}{
		{"de-tagged", "", tagged, map[string]any{"machineId": tagged.ID}, offboard.RuleMachineTags},
		{"de-tagged-by-name", "", tagged, map[string]any{"computerDnsName": tagged.ComputerDNSName}, offboard.RuleMachineTags},
		{"de-tagged-dry", "", tagged, map[string]any{"machineId": tagged.ID, "dryRun": true}, offboard.RuleMachineTags},
		{"de-grouped-bulk", ".bulk", grouped, map[string]any{"machineId": grouped.ID}, offboard.RuleRbacGroups},
	} {
		tc.body["requestId"] = tc.id
		e.publish("mde.offboard.request.contoso"+tc.subject, tc.body, "contoso:"+tc.id)
		var got []offboard.Result
		eventually(t, 20*time.Second, "result of "+tc.id, func() bool {
			got = c.snapshot()["contoso/"+tc.id]
			return len(got) > 0
		})
		if r := got[0]; r.Outcome != offboard.OutcomeFailed || r.Error == nil || r.Error.Code != offboard.CodeBlockedByPolicy || r.Error.Rule != tc.rule || r.Attempts != 0 {
			t.Errorf("%s: outcome %q error %+v attempts %d; want blocked_by_policy by %s, no call", tc.id, r.Outcome, r.Error, r.Attempts, tc.rule)
		}
		if n := e.offboardCalls(tn, tc.m.ID); n != 0 {
			t.Errorf("%s: %d offboard calls for a protected device", tc.id, n)
		}
	}
	e.publish("mde.offboard.request.contoso", map[string]any{"requestId": "de-other", "machineId": other.ID}, "contoso:de-other")
	eventually(t, 20*time.Second, "result of de-other", func() bool { return len(c.snapshot()["contoso/de-other"]) > 0 })
	if r := c.snapshot()["contoso/de-other"][0]; r.Outcome != offboard.OutcomeCreated {
		t.Errorf("unprotected device: outcome %q error %+v; want created", r.Outcome, r.Error)
	}
}
