package main

import (
	"path/filepath"
	"strings"
	"testing"

	"github.com/contoso-secops/mde-offboard/internal/worker"
)

// TestCampaignPlanSaysTheBulkPause: the tenant's bulk requests, a
// campaign run's, are paused: the summary's time starts only at the
// resume, and the plan says so, with who paused and the resume to give.
// Before, it gave the time alone. Normal priority paused says nothing:
// a campaign runs on bulk.
func TestCampaignPlanSaysTheBulkPause(t *testing.T) {
	e := setupPlan(t, worker.PlanOptions{PageSize: 64, InlineMax: 4096})
	plan := func(name string) string {
		t.Helper()
		code, stdout, stderr := e.ctl("campaign", "plan", "--tenant", "contoso", "--inactive-for", "90d", "--out", filepath.Join(e.dir, name))
		if code != exitOK {
			t.Fatalf("exit %d: %s", code, stderr)
		}
		return stdout
	}
	if code, _, stderr := e.ctl("pause", "contoso", "--priority", "normal", "--reason", "change freeze"); code != exitOK {
		t.Fatal(stderr)
	}
	if out := plan("a.csv"); strings.Contains(out, "paused") {
		t.Errorf("normal paused, the summary says:\n%s", out)
	}
	if code, _, stderr := e.ctl("pause", "contoso", "--priority", "bulk", "--reason", "change freeze"); code != exitOK {
		t.Fatal(stderr)
	}
	want := ": change freeze; a campaign run's rows wait until offboardctl resume contoso --priority bulk"
	if out := plan("b.csv"); !strings.Contains(out, "  paused           the tenant's bulk requests, by ") || !strings.Contains(out, want) {
		t.Errorf("bulk paused, the summary lacks the pause and %q:\n%s", want, out)
	}
}
