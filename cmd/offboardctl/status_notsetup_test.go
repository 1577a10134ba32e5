package main

import (
	"encoding/json"
	"strings"
	"testing"
)

// TestStatusShowsControlsOfATenantNotSetUp: --unknown-tenant pauses, or
// sets the budget of, a tenant about to be added, and the command says
// "see offboardctl status newco". status knew tenants by their consumers
// alone: status newco failed (exit 1, "no worker has set up its
// consumers") and status left it out, so the control in force could be
// seen nowhere until a worker set the tenant up. A tenant with a
// control in force is shown, saying that no worker has set it up; one
// without (resumed) is still refused.
func TestStatusShowsControlsOfATenantNotSetUp(t *testing.T) {
	t.Parallel()
	url, _ := natsWithStreams(t)
	for _, args := range [][]string{
		{"pause", "newco", "--unknown-tenant", "--as", "zoe", "--reason", "before onboarding"},
		{"budget", "newco", "10/1h", "--unknown-tenant"},
		{"pause", "oldco", "--unknown-tenant"},
		{"resume", "oldco", "--unknown-tenant"},
	} {
		if code, _, errs := ctl(t, url, args...); code != exitOK {
			t.Fatalf("%q: exit %d, %q", args, code, errs)
		}
	}

	code, out, errs := ctl(t, url, "status", "newco")
	if code != exitOK || errs != "" {
		t.Fatalf("status newco: exit %d, stderr %q; want 0 and its controls", code, errs)
	}
	for _, want := range []string{
		"10/1h (override)", "newco: normal paused by zoe", "newco: bulk paused by zoe",
		"before onboarding", "newco: no worker has set up its consumers",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("status newco does not say %q:\n%s", want, out)
		}
	}
	if row := strings.Fields(strings.Split(out, "\n")[1]); len(row) < 2 || row[0] != "newco" || row[1] != "all" {
		t.Errorf("status newco's row is not newco's, paused all:\n%s", out)
	}
	if strings.Contains(out, "consumer is missing") {
		t.Errorf("status newco tells each consumer missing, as of a tenant set up:\n%s", out)
	}

	code, out, errs = ctl(t, url, "status")
	if code != exitOK || !strings.Contains(out, "\nnewco ") || !strings.Contains(out, "\ncontoso ") || strings.Contains(out, "oldco") {
		t.Errorf("status: exit %d, stderr %q; want contoso, fabrikam and newco, not oldco:\n%s", code, errs, out)
	}

	code, out, errs = ctl(t, url, "status", "newco", "--json")
	var sts []tenantStatus
	if code != exitOK || json.Unmarshal([]byte(out), &sts) != nil || len(sts) != 1 {
		t.Fatalf("status newco --json: exit %d, stderr %q, stdout %q", code, errs, out)
	}
	if st := sts[0]; !st.Paused["normal"] || !st.Paused["bulk"] || st.Budget.Override != "10/1h" || len(st.MissingConsumers) != 2 {
		t.Errorf("status newco --json: %+v; want both paused, the override, both consumers missing", st)
	}

	if code, _, errs := ctl(t, url, "status", "oldco"); code != exitFailed || !strings.Contains(errs, "no worker has set up its consumers") {
		t.Errorf("status of a tenant not set up, with no control in force: exit %d, stderr %q; want 1", code, errs)
	}
}
