package main

import (
	"fmt"
	"path/filepath"
	"strings"
	"testing"
)

// TestCSVDryRunColumnRefused: a campaign is a dry run by --dry-run alone.
// A CSV column named dryRun, in any case or naming style, said to mark
// rows as dry runs was ignored as another column, and every row made a
// real offboard. Such a CSV exits 2, one line naming the column and the
// flag, before anything is published; no device is offboarded.
func TestCSVDryRunColumnRefused(t *testing.T) {
	t.Parallel()
	e := newEnv(t, 2)
	e.startWorker()
	dir := t.TempDir()
	for i, col := range []string{"dryRun", "DryRun", "dry_run", "Dry Run", "DRY-RUN", " dryrun ", "Dry\u00a0Run", "dry\u200bRun", "dry\u2011run"} {
		body := "machineId," + col + "\n" + e.machines[0].ID + ",true\n" + e.machines[1].ID + ",yes\n"
		name := "wave" + string(rune('a'+i))
		p := writeFile(t, dir, name+".csv", body)
		for _, dry := range []bool{false, true} {
			args := []string{"campaign", "run", "--tenant", tenant, "--csv", p, "--report", filepath.Join(dir, name+"-report.csv")}
			if dry {
				args = append(args, "--dry-run")
			}
			code, out, errs := e.ctl(t.Context(), args...)
			if code != exitUsage || !strings.Contains(errs, "--dry-run") || !strings.Contains(errs, strings.Trim(fmt.Sprintf("%+q", strings.TrimSpace(col)), `"`)) ||
				strings.Count(strings.TrimSpace(errs), "\n") != 0 {
				t.Errorf("column %q, --dry-run %v: exit %d, stdout %q, stderr %q; want exit 2, one line naming the column and --dry-run",
					col, dry, code, out, errs)
			}
		}
	}
	if n := e.lastSeq(); n != 0 {
		t.Errorf("%d requests published", n)
	}
	if n := len(e.sim.Actions(e.tenantID)); n != 0 {
		t.Errorf("%d devices offboarded by CSVs whose rows said dry run", n)
	}
}
