package main

import (
	"path/filepath"
	"strings"
	"testing"
)

// A CSV saved by Excel with its separator line (sep=;) is run as Excel
// reads it: the line skipped, its separator honoured. It was refused, the
// separator line read as the header.
func TestCampaignRunOfACSVWithExcelsSeparatorLine(t *testing.T) {
	t.Parallel()
	url, js := natsWithStreams(t)
	dir := t.TempDir()
	a, b := strings.Repeat("a", 40), strings.Repeat("b", 40)
	p := writeFile(t, dir, "excel.csv", "\ufeffsep=;\r\nmachineId;comment\r\n"+a+";retired, by Excel\r\n"+b+";\r\n")
	report := filepath.Join(dir, "excel-report.csv")
	before := lastRequestSeq(t, js)
	res := runUntilPublished(t, url, js, 2, "campaign", "run", "--tenant", "contoso", "--csv", p, "--report", report)
	if res.code != exitFailed || !strings.Contains(res.out, "2 rows:") || !strings.Contains(res.out, "published 2,") {
		t.Errorf("exit %d (want 1: no worker, interrupted), stdout %q, stderr %q", res.code, res.out, res.err)
	}
	if n := lastRequestSeq(t, js) - before; n != 2 {
		t.Errorf("%d requests published, want 2", n)
	}
	recs := readReport(t, report)
	if len(recs) != 3 || recs[1][2] != a || recs[2][2] != b {
		t.Errorf("report %q", recs)
	}
}
