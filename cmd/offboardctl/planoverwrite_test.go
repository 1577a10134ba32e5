package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/contoso-secops/mde-offboard/internal/worker"
)

// TestCampaignPlanKeepsAReviewedPlan: a plan is reviewed by deleting the
// rows of the devices to keep. The same plan command run again (shell
// history) wrote every device back over it, and campaign run would then
// have offboarded the devices the review kept. An existing --out is
// refused, exit 2, before the worker is asked, unless --force says to
// write over it.
func TestCampaignPlanKeepsAReviewedPlan(t *testing.T) {
	e := setupPlan(t, worker.PlanOptions{PageSize: 64, InlineMax: 4096})
	out := filepath.Join(e.dir, "reviewed.csv")
	args := []string{"campaign", "plan", "--tenant", "contoso", "--inactive-for", "90d", "--out", out}
	if code, _, stderr := e.ctl(args...); code != exitOK {
		t.Fatalf("first plan: exit %d: %s", code, stderr)
	}
	reviewed := []byte("machineId,computerDnsName,lastSeen,osPlatform,healthStatus,rbacGroupName,machineTags\n")
	if err := os.WriteFile(out, reviewed, 0o600); err != nil {
		t.Fatal(err)
	}
	calls := e.calls()["machines"]
	code, stdout, stderr := e.ctl(args...)
	if code != exitUsage || strings.Count(strings.TrimSpace(stderr), "\n") != 0 ||
		!strings.Contains(stderr, "--out") || !strings.Contains(stderr, "--force") {
		t.Fatalf("plan over a reviewed one: exit %d, stderr %q, stdout %q; want one line naming --out and --force, exit 2", code, stderr, stdout)
	}
	if got, err := os.ReadFile(out); err != nil || string(got) != string(reviewed) {
		t.Fatalf("reviewed plan changed (%v):\n%s", err, got)
	}
	if n := e.calls()["machines"]; n != calls {
		t.Errorf("%d inventory calls for a refused plan, want none", n-calls)
	}
	if code, _, stderr := e.ctl(append(args, "--force")...); code != exitOK {
		t.Fatalf("--force: exit %d: %s", code, stderr)
	}
	if rows := readCSV(t, out); len(rows)-1 != 193 {
		t.Errorf("--force: %d devices written, want 193", len(rows)-1)
	}
}
