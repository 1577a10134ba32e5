package main

import (
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// A campaign run again counts, in its ETA, only the rows it has yet to
// publish: the rows answered before are done, and those whose request
// still waits are in the tenant's backlog already. Counted as rows not
// published too, they made the ETA of a resumed campaign that of the
// whole CSV and more until the backlog was read again.
func TestCampaignETAOfARunAgain(t *testing.T) {
	t.Parallel()
	e := newEnv(t, 30)
	e.startWorker()
	dir := t.TempDir()
	report := filepath.Join(dir, "r.csv")
	first := writeFile(t, dir, "first.csv", idsCSV(e.machines[:20]))
	if code, _, errs := e.ctl(t.Context(), "campaign", "run", "--tenant", tenant, "--csv", first, "--name", "wave", "--report", report); code != exitOK {
		t.Fatalf("first run: exit %d: %s", code, errs)
	}
	e.stopWorker() // the 10 rows added wait in the stream
	all := writeFile(t, dir, "all.csv", idsCSV(e.machines))
	args := []string{"campaign", "run", "--tenant", tenant, "--csv", all, "--name", "wave", "--report", report, "--rate", "5/1m", "--timeout", "1s"}
	if code, _, errs := e.ctl(t.Context(), args...); code != exitFailed {
		t.Fatalf("second run: exit %d: %s", code, errs)
	}
	// Its first line only: 10 rows waiting at 5 a minute, after the first
	// run's 20 calls, made seconds ago and counted in the minute's window
	// from the quota journal: the 10th starts two minutes after the last
	// of them, less the time since (the whole CSV read 5m00s and more).
	// The rows published before are counted as the publishing reaches
	// them, which may be before or after that line.
	code, out, errs := e.ctl(t.Context(), append(args, "--progress-every", "1h")...)
	firstLine := regexp.MustCompile(`waiting 10; published 0 \(before (0|10)\); ETA 1m[0-5][0-9]s` + regexp.QuoteMeta(noWorkerNote) + `\n`)
	if code != exitFailed || !strings.Contains(out, "20/30 answered") || !firstLine.MatchString(out) {
		t.Errorf("run again: exit %d, stdout %q, stderr %q; want an ETA of under 2m00s", code, out, errs)
	}
}
