package main

import (
	"path/filepath"
	"strings"
	"testing"
)

// TestDryRunFlagGivenTwice: --dry-run and --dry-run=false on one command
// line (a wrapper's default after the operator's flag) ran for real, the
// last value kept without a word, and offboarded every row. Two values
// are bad usage: exit 2, one line, nothing published. The same value
// twice is taken.
func TestDryRunFlagGivenTwice(t *testing.T) {
	t.Parallel()
	e := newEnv(t, 2)
	e.startWorker()
	dir := t.TempDir()
	p := writeFile(t, dir, "wave.csv", idsCSV(e.machines))
	run := func(flags ...string) (int, string, string) {
		return e.ctl(t.Context(), append([]string{"campaign", "run", "--tenant", tenant, "--csv", p,
			"--report", filepath.Join(dir, "wave-report.csv")}, flags...)...)
	}
	for _, flags := range [][]string{
		{"--dry-run", "--dry-run=false"},
		{"--dry-run=true", "--dry-run=0"},
		{"--dry-run=false", "--dry-run"},
	} {
		code, out, errs := run(flags...)
		if code != exitUsage || !strings.Contains(errs, "--dry-run given twice") || strings.Count(strings.TrimSpace(errs), "\n") != 0 {
			t.Errorf("%v: exit %d, stdout %q, stderr %q; want exit 2, one line saying --dry-run was given twice", flags, code, out, errs)
		}
	}
	if n := e.lastSeq(); n != 0 {
		t.Errorf("%d requests published", n)
	}
	if n := len(e.sim.Actions(e.tenantID)); n != 0 {
		t.Errorf("%d devices offboarded by a run given --dry-run", n)
	}
	if code, out, errs := run("--dry-run", "--dry-run"); code != exitOK || !strings.Contains(out, "dry_run 2") {
		t.Errorf("--dry-run twice: exit %d, stdout %q, stderr %q; want a dry run of both rows", code, out, errs)
	}
}
