package app

import (
	"encoding/json"
	"testing"
	"time"

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
