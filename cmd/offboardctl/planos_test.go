package main

import (
	"path/filepath"
	"strings"
	"testing"

	"github.com/contoso-secops/mde-offboard/internal/worker"
)

// TestEmptyPlanWithOSSaysHowDefenderSpellsIt: a plan asked with an --os
// value Defender does not use (Win11 for Windows11) is empty, exit 0, as
// before, and its summary now says how Defender spells osPlatform: the
// empty plan read as nothing to offboard. A value in another case
// matches, and a plan with devices says nothing more.
func TestEmptyPlanWithOSSaysHowDefenderSpellsIt(t *testing.T) {
	t.Parallel()
	e := setupPlan(t, worker.PlanOptions{})
	code, out, errb := e.ctl("campaign", "plan", "--tenant", "contoso", "--inactive-for", "90d", "--os", "Win11", "--out", filepath.Join(e.dir, "win11.csv"))
	if code != exitOK || !strings.Contains(out, ": 0 devices") ||
		!strings.Contains(out, `--os             "Win11": no device; if some were expected, give osPlatform as Defender spells it (Windows10, Windows11,`) {
		t.Errorf("--os Win11: exit %d, stdout %q, stderr %q", code, out, errb)
	}
	code, out, errb = e.ctl("campaign", "plan", "--tenant", "contoso", "--inactive-for", "90d", "--os", "windows11", "--out", filepath.Join(e.dir, "windows11.csv"))
	if code != exitOK || strings.Contains(out, ": 0 devices") || strings.Contains(out, "Defender spells") {
		t.Errorf("--os windows11: exit %d, stdout %q, stderr %q", code, out, errb)
	}
}
