package app

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/contoso-secops/mde-offboard/internal/config"
	"github.com/contoso-secops/mde-offboard/internal/mde/mdesim"
	"github.com/contoso-secops/mde-offboard/offboard"
)

// TestGuardsDeviceGroupUnknown: a device whose record gives neither a
// device group name nor a group id, by id and by name, is refused by
// protect.rbacGroups and never offboarded: it may be in a protected
// group. One in no group (id 0) is offboarded.
func TestGuardsDeviceGroupUnknown(t *testing.T) {
	t.Parallel()
	g := setupGuards(t)
	long := time.Now().Add(-90 * 24 * time.Hour)
	missing := mdesim.Machine{ID: newID(), ComputerDNSName: "pc-nogroup.contoso.local", LastSeen: long, Members: map[string]json.RawMessage{"rbacGroupId": nil, "rbacGroupName": nil}}
	null := mdesim.Machine{ID: newID(), ComputerDNSName: "pc-nullgroup.contoso.local", LastSeen: long, Members: map[string]json.RawMessage{"rbacGroupId": json.RawMessage("null")}}
	for _, m := range []mdesim.Machine{missing, null} {
		g.sim.AddMachine(g.tenants["contoso"].tenantID, m)
	}
	g.wantBlocked(g.request("contoso", map[string]any{"requestId": "u-missing", "machineId": missing.ID}), missing, offboard.RuleRbacGroups, "no device group")
	g.wantBlocked(g.request("contoso", map[string]any{"requestId": "u-null-by-name", "computerDnsName": null.ComputerDNSName}), null, offboard.RuleRbacGroups, "no device group")
	g.wantBlocked(g.request("contoso", map[string]any{"requestId": "u-dry", "machineId": null.ID, "dryRun": true}), null, offboard.RuleRbacGroups, "no device group")
	if r := g.request("contoso", map[string]any{"requestId": "u-none", "machineId": g.inactive2.ID}); r.Outcome != offboard.OutcomeCreated {
		t.Errorf("a device in no group (id 0): %+v, want created", r.Error)
	}
}

// TestGuardsDeviceTagsUnknown: a device whose record gives no
// machineTags (null or missing), by id and by name, dry run included, is
// refused by protect.machineTags and never offboarded: it may carry the
// protected tag. One with an empty list of tags is offboarded.
func TestGuardsDeviceTagsUnknown(t *testing.T) {
	t.Parallel()
	g := setupGuards(t)
	long := time.Now().Add(-90 * 24 * time.Hour)
	missing := mdesim.Machine{ID: newID(), ComputerDNSName: "pc-notags.contoso.local", LastSeen: long, Members: map[string]json.RawMessage{"machineTags": nil}}
	null := mdesim.Machine{ID: newID(), ComputerDNSName: "pc-nulltags.contoso.local", LastSeen: long, Members: map[string]json.RawMessage{"machineTags": json.RawMessage("null")}}
	for _, m := range []mdesim.Machine{missing, null} {
		g.sim.AddMachine(g.tenants["contoso"].tenantID, m)
	}
	g.wantBlocked(g.request("contoso", map[string]any{"requestId": "t-missing", "machineId": missing.ID}), missing, offboard.RuleMachineTags, "no machineTags")
	g.wantBlocked(g.request("contoso", map[string]any{"requestId": "t-null-by-name", "computerDnsName": null.ComputerDNSName}), null, offboard.RuleMachineTags, "no machineTags")
	g.wantBlocked(g.request("contoso", map[string]any{"requestId": "t-dry", "machineId": null.ID, "dryRun": true}), null, offboard.RuleMachineTags, "no machineTags")
	if r := g.request("contoso", map[string]any{"requestId": "t-none", "machineId": g.inactive2.ID}); r.Outcome != offboard.OutcomeCreated {
		t.Errorf("a device with no tags ([]): %+v, want created", r.Error)
	}
}

// TestGuardsNameAsWritten: a device the API names with white space
// around the name, or in full-width letters, is refused by the glob its
// name spells, and never offboarded.
func TestGuardsNameAsWritten(t *testing.T) {
	t.Parallel()
	g := setupGuards(t)
	long := time.Now().Add(-90 * 24 * time.Hour)
	spaced := mdesim.Machine{ID: newID(), ComputerDNSName: " DC02.contoso.local. ", LastSeen: long}
	wide := mdesim.Machine{ID: newID(), ComputerDNSName: "\uff44\uff43\uff10\uff13.contoso.local", LastSeen: long}
	for _, m := range []mdesim.Machine{spaced, wide} {
		g.sim.AddMachine(g.tenants["contoso"].tenantID, m)
	}
	g.wantBlocked(g.request("contoso", map[string]any{"requestId": "n-spaced", "machineId": spaced.ID}), spaced, offboard.RuleComputerDNSNames, `matches "dc*.contoso.local"`)
	g.wantBlocked(g.request("contoso", map[string]any{"requestId": "n-wide", "machineId": wide.ID}), wide, offboard.RuleComputerDNSNames, `matches "dc*.contoso.local"`)
}

// TestGuardsHiddenCharactersInATag: a device tagged DoNotOffboard with a
// zero-width space after it (pasted into the portal) is refused and
// never offboarded.
func TestGuardsHiddenCharactersInATag(t *testing.T) {
	t.Parallel()
	g := setupGuards(t)
	m := mdesim.Machine{ID: newID(), ComputerDNSName: "pc-pasted.contoso.local", LastSeen: time.Now().Add(-90 * 24 * time.Hour), MachineTags: []string{"DoNotOffboard\u200b"}}
	g.sim.AddMachine(g.tenants["contoso"].tenantID, m)
	g.wantBlocked(g.request("contoso", map[string]any{"requestId": "h-tag", "machineId": m.ID}), m, offboard.RuleMachineTags, "tagged")
}

// TestGuardsInternationalNames: a glob written in letters protects the
// device the API names in punycode, and a punycode glob the device named
// in letters: neither is offboarded.
func TestGuardsInternationalNames(t *testing.T) {
	t.Parallel()
	e := setup(t, envConfig{machines: 1, tenants: []string{"contoso"}, tweak: func(f *config.File) {
		f.Tenants[0].Guards = parseGuards(t, `
    guards:
      protect:
        computerDnsNames: ["bücher*.contoso.local", "xn--mnchen-3ya.contoso.local"]
`)
	}})
	tn := e.tenants["contoso"].tenantID
	puny := mdesim.Machine{ID: newID(), ComputerDNSName: "xn--bcher01-n2a.contoso.local"}
	letters := mdesim.Machine{ID: newID(), ComputerDNSName: "München.contoso.local"}
	e.sim.AddMachine(tn, puny)
	e.sim.AddMachine(tn, letters)
	c := e.collect("mde.offboard.result.>")
	e.publish("mde.offboard.request.contoso", map[string]any{"requestId": "i-puny", "machineId": puny.ID}, "contoso:i-puny")
	e.publish("mde.offboard.request.contoso", map[string]any{"requestId": "i-letters", "machineId": letters.ID}, "contoso:i-letters")
	for _, id := range []string{"i-puny", "i-letters"} {
		var got []offboard.Result
		eventually(t, 20*time.Second, "result of "+id, func() bool {
			got = c.snapshot()["contoso/"+id]
			return len(got) > 0
		})
		if r := got[0]; r.Error == nil || r.Error.Rule != offboard.RuleComputerDNSNames {
			t.Errorf("%s: %s %+v, want blocked by %s", id, r.Outcome, r.Error, offboard.RuleComputerDNSNames)
		}
	}
	if n := e.offboardCalls(tn, puny.ID) + e.offboardCalls(tn, letters.ID); n != 0 {
		t.Errorf("%d offboard calls for protected devices", n)
	}
}
