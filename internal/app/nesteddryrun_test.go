package app

import (
	"strings"
	"testing"

	"github.com/contoso-secops/mde-offboard/offboard"
)

// TestDryRunNestedInAnotherMemberIsRefused: a publisher that put dryRun
// inside a member of its own ({"options": {"dryRun": true}}) meant a dry
// run; the member, unknown, was ignored and the device offboarded. Such a
// request is answered invalid_request, naming both members, with a dead
// letter and no API call; dryRun at the top level is still a dry run.
func TestDryRunNestedInAnotherMemberIsRefused(t *testing.T) {
	t.Parallel()
	e := setup(t, envConfig{tenants: []string{"contoso"}, machines: 3})
	c := e.collect("mde.offboard.result.>")
	ms := e.tenants["contoso"].machines
	for i, body := range []map[string]any{
		{"requestId": "nested-1", "machineId": ms[0].ID, "options": map[string]any{"dryRun": true}},
		{"requestId": "nested-2", "computerDnsName": ms[1].ComputerDNSName, "meta": []any{map[string]any{"flags": map[string]any{"dry_run": "yes"}}}},
	} {
		r := e.one(c, "mde.offboard.request.contoso", body)
		if r.Outcome != offboard.OutcomeFailed || r.Error == nil || r.Error.Code != offboard.CodeInvalidRequest ||
			!strings.Contains(r.Error.Message, "dryRun is read at the request's top level") {
			t.Errorf("request %d: %s %+v, want failed invalid_request naming the nested member", i+1, r.Outcome, r.Error)
		}
	}
	r := e.one(c, "mde.offboard.request.contoso", map[string]any{"requestId": "top-1", "machineId": ms[2].ID, "dryRun": true, "options": map[string]any{"run": 1}})
	if r.Outcome != offboard.OutcomeDryRun {
		t.Errorf("dryRun at the top level: %s %+v, want dry_run", r.Outcome, r.Error)
	}
	for _, call := range e.sim.Calls() {
		if call.API == "offboard" {
			t.Errorf("offboard call for %s: a dry run was asked for", call.MachineID)
		}
	}
	if n := e.streamMsgs(offboard.StreamDead); n != 2 {
		t.Errorf("%d dead letters, want 2", n)
	}
}

// TestDryRunWithIsBeforeItIsRefused: C# and Java name a flag with "is"
// before it; a publisher serializing its IsDryRun property sent
// {"isDryRun": true}, an unknown member, and the device was offboarded.
// It is answered invalid_request, naming dryRun, with no API call.
func TestDryRunWithIsBeforeItIsRefused(t *testing.T) {
	t.Parallel()
	e := setup(t, envConfig{tenants: []string{"contoso"}, machines: 2})
	c := e.collect("mde.offboard.result.>")
	ms := e.tenants["contoso"].machines
	for i, body := range []map[string]any{
		{"requestId": "is-1", "machineId": ms[0].ID, "isDryRun": true},
		{"requestId": "is-2", "computerDnsName": ms[1].ComputerDNSName, "IsDryRun": true},
	} {
		r := e.one(c, "mde.offboard.request.contoso", body)
		if r.Outcome != offboard.OutcomeFailed || r.Error == nil || r.Error.Code != offboard.CodeInvalidRequest ||
			!strings.Contains(r.Error.Message, `write "dryRun"`) {
			t.Errorf("request %d: %s %+v, want failed invalid_request naming dryRun", i+1, r.Outcome, r.Error)
		}
	}
	for _, call := range e.sim.Calls() {
		if call.API == "offboard" {
			t.Errorf("offboard call for %s: a dry run was asked for", call.MachineID)
		}
	}
}
