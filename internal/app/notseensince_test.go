package app

import (
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/contoso-secops/mde-offboard/internal/mde/mdesim"
	"github.com/contoso-secops/mde-offboard/offboard"
)

// TestNotSeenSinceRefusesADeviceSeenSince: a request's notSeenSince is
// its premise. A device Defender saw after it is refused, rule
// notSeenSince, with no offboard call, for a dry run too, and for a retry
// of the refusal (read again, judged again); a device not seen since is
// offboarded. A tenant without guards reads the device for it, once; a
// tenant whose guards read it makes that one read, and its guards come
// first. A value that is no time, one before 2000 and one in the future
// are invalid_request, with no call at all.
func TestNotSeenSinceRefusesADeviceSeenSince(t *testing.T) {
	t.Parallel()
	g := setupGuards(t)
	fabrikam := g.tenants["fabrikam"].tenantID
	now := time.Now().UTC()
	planned := now.Add(-90 * 24 * time.Hour) // the plan saw it last then
	back := mdesim.Machine{ID: newID(), ComputerDNSName: "pc-back.contoso.local", LastSeen: now.Add(-time.Hour)}
	gone := mdesim.Machine{ID: newID(), ComputerDNSName: "pc-gone.contoso.local", LastSeen: planned}
	other := mdesim.Machine{ID: newID(), ComputerDNSName: "pc-other.contoso.local", LastSeen: planned}
	for _, m := range []mdesim.Machine{back, gone, other} {
		g.sim.AddMachine(fabrikam, m)
	}
	since := planned.Format(time.RFC3339Nano)
	refused := func(r offboard.Result, m mdesim.Machine, since string, checked ...string) {
		t.Helper()
		if r.Outcome != offboard.OutcomeFailed || r.Error == nil || r.Error.Code != offboard.CodeBlockedByPolicy || r.Error.Rule != offboard.RuleNotSeenSince {
			t.Fatalf("%s: outcome %q error %+v; want blocked_by_policy by notSeenSince", r.RequestID, r.Outcome, r.Error)
		}
		if !strings.Contains(r.Error.Message, "Defender saw the device again") || !strings.Contains(r.Error.Message, "not seen after "+since) {
			t.Errorf("%s: message %q", r.RequestID, r.Error.Message)
		}
		if r.Policy == nil || !slices.Equal(r.Policy.Checked, checked) || r.Policy.LastSeen == "" {
			t.Errorf("%s: policy %+v, want checked %q and the lastSeen read", r.RequestID, r.Policy, checked)
		}
		if r.Attempts != 0 || r.MachineID != m.ID || r.ComputerDNSName != m.ComputerDNSName {
			t.Errorf("%s: %d attempts, device %s %q", r.RequestID, r.Attempts, r.MachineID, r.ComputerDNSName)
		}
	}

	refused(g.request("fabrikam", map[string]any{"requestId": "n-back", "machineId": back.ID, "notSeenSince": since}), back, since, "notSeenSince")
	refused(g.request("fabrikam", map[string]any{"requestId": "n-back-dry", "machineId": back.ID, "notSeenSince": since, "dryRun": true}), back, since, "notSeenSince")
	// The retry of the refusal, as dead retry publishes it: judged again.
	g.publish("mde.offboard.request.fabrikam", map[string]any{"requestId": "n-back", "machineId": back.ID, "notSeenSince": since, "attempt": 2}, "fabrikam:n-back:2")
	eventually(t, 20*time.Second, "the retry's result", func() bool { return len(g.c.snapshot()["fabrikam/n-back"]) == 2 })
	retry := g.c.snapshot()["fabrikam/n-back"][1]
	if retry.Attempt != 2 {
		t.Fatalf("second result of n-back answers attempt %d, want 2", retry.Attempt)
	}
	refused(retry, back, since, "notSeenSince")
	if n := g.machineReads("fabrikam", back.ID); n != 3 {
		t.Errorf("the device seen again was read %d times, want 3 (once per request and retry)", n)
	}
	if n := g.offboardCalls(fabrikam, back.ID); n != 0 {
		t.Errorf("%d offboard calls for the device seen again", n)
	}

	// Not seen since: offboarded, after one read; at the very time too.
	r := g.request("fabrikam", map[string]any{"requestId": "n-gone", "machineId": gone.ID, "notSeenSince": since})
	if r.Outcome != offboard.OutcomeCreated || r.Policy == nil || !slices.Equal(r.Policy.Checked, []string{"notSeenSince"}) {
		t.Fatalf("device not seen since: %+v policy %+v; want created with notSeenSince checked", r, r.Policy)
	}
	if n := g.machineReads("fabrikam", gone.ID); n != 1 {
		t.Errorf("the device not seen since was read %d times, want once", n)
	}
	// A request without it, as an older publisher sends: no read, as
	// before (the tenant has no guards).
	r = g.request("fabrikam", map[string]any{"requestId": "n-other", "machineId": other.ID})
	if r.Outcome != offboard.OutcomeCreated || r.Policy != nil || g.machineReads("fabrikam", other.ID) != 0 {
		t.Errorf("request without notSeenSince: %+v policy %+v, %d reads; want created, no policy, no read", r, r.Policy, g.machineReads("fabrikam", other.ID))
	}

	// Bad values: no call, not even a read.
	for _, tc := range []struct{ id, value, says string }{
		{"n-bad-form", "2026-08-01 09:12:00", "is not an RFC 3339 time"},
		{"n-bad-old", "1970-01-01T00:00:00Z", "is before 2000"},
		{"n-bad-future", now.Add(time.Hour).Format(time.RFC3339), "is in the future"},
	} {
		r := g.request("fabrikam", map[string]any{"requestId": tc.id, "machineId": back.ID, "notSeenSince": tc.value})
		if r.Error == nil || r.Error.Code != offboard.CodeInvalidRequest || !strings.Contains(r.Error.Message, tc.says) || r.Policy != nil {
			t.Errorf("notSeenSince %q: %+v policy %+v; want invalid_request saying %q", tc.value, r.Error, r.Policy, tc.says)
		}
	}
	if n := g.machineReads("fabrikam", back.ID); n != 3 {
		t.Errorf("the device was read %d times after the bad requests, want still 3", n)
	}

	// contoso's guards read the device: the premise takes that read, and
	// its guards come first.
	old := now.Add(-100 * 24 * time.Hour).Format(time.RFC3339Nano)
	refused(g.request("contoso", map[string]any{"requestId": "n-guarded", "machineId": g.inactive.ID, "notSeenSince": old}),
		g.inactive, old, "protect", "requireInactiveFor", "notSeenSince")
	if n := g.machineReads("contoso", g.inactive.ID); n != 1 {
		t.Errorf("a guarded device was read %d times, want once", n)
	}
	r = g.request("contoso", map[string]any{"requestId": "n-recent", "machineId": g.recent.ID, "notSeenSince": old})
	if r.Error == nil || r.Error.Rule != offboard.RuleRequireInactiveFor {
		t.Errorf("recent device with a premise: %+v; want refused by requireInactiveFor, the guard first", r.Error)
	}
	if len(g.sim.Actions(g.tenants["contoso"].tenantID)) != 0 {
		t.Errorf("contoso actions %+v, want none", g.sim.Actions(g.tenants["contoso"].tenantID))
	}
	eventually(t, 5*time.Second, "the refusals counted", func() bool {
		return metricValue(t, g.env, "mde_offboard_blocked_total", map[string]string{"tenant": "fabrikam", "rule": "notSeenSince"}) == 3
	})
}
