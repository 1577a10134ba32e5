package main

import (
	"fmt"
	"path/filepath"
	"strings"
	"testing"
)

// A CSV that names one device at several rows is published whole, as the
// contract has every valid row published, but the run says so first, on
// standard error, naming each later row and the row before it: the rows
// are answered one by one (already_pending while the earlier row's
// action is under way), which an operator counting devices by rows did
// not expect. Names match as the worker matches them: case and a final
// dot aside. A row naming no device is no repeat.
func TestCampaignRunWarnsOfADeviceAtTwoRows(t *testing.T) {
	t.Parallel()
	url, js := natsWithStreams(t)
	dir := t.TempDir()
	id := strings.Repeat("a", 40)
	p := writeFile(t, dir, "repeats.csv", "computerDnsName,machineId\npc-1,\npc-2,\nPC-1.,\n,"+id+"\n,\n,"+strings.ToUpper(id)+"\n,\npc-1,\n")
	res := runUntilPublished(t, url, js, 6, "campaign", "run", "--tenant", "contoso", "--csv", p, "--report", filepath.Join(dir, "r.csv"))
	want := "offboardctl: warning: " + p + ": 3 rows name a device an earlier row names; every row is published, and each " +
		"answered on its own: computerDnsName \"pc-1\" at rows 1, 3 and 8; machineId \"" + id + "\" at rows 4 and 6\n"
	if !strings.Contains(res.err, want) {
		t.Errorf("stderr %q, want it to hold %q", res.err, want)
	}
	if !strings.Contains(res.out, "published 6,") {
		t.Errorf("stdout %q, want every valid row published", res.out)
	}

	q := writeFile(t, dir, "once.csv", "computerDnsName\npc-1\npc-2\npc-3\n")
	res = runUntilPublished(t, url, js, 3, "campaign", "run", "--tenant", "contoso", "--csv", q, "--report", filepath.Join(dir, "q.csv"))
	if strings.Contains(res.err, "warning") {
		t.Errorf("stderr %q, want no warning for a CSV naming each device once", res.err)
	}
}

// Past five devices, or five rows of one, the warning counts the rest:
// one line, whatever the CSV's size.
func TestCampaignRunWarningOfRepeatsIsBounded(t *testing.T) {
	t.Parallel()
	url, js := natsWithStreams(t)
	dir := t.TempDir()
	var csv strings.Builder
	csv.WriteString("computerDnsName\n")
	for i := range 40 {
		fmt.Fprintf(&csv, "pc-%d\npc-%d\n", i%7, i%7)
	}
	p := writeFile(t, dir, "many.csv", csv.String())
	res := runUntilPublished(t, url, js, 80, "campaign", "run", "--tenant", "contoso", "--csv", p, "--report", filepath.Join(dir, "r.csv"))
	want := ": 73 rows name a device an earlier row names; every row is published, and each answered on its own: " +
		"computerDnsName \"pc-0\" at rows 1, 2, 15, 16, 29 and 7 more; computerDnsName \"pc-1\" at rows 3, 4, 17, 18, 31 and 7 more; " +
		"computerDnsName \"pc-2\" at rows 5, 6, 19, 20, 33 and 7 more; computerDnsName \"pc-3\" at rows 7, 8, 21, 22, 35 and 7 more; " +
		"computerDnsName \"pc-4\" at rows 9, 10, 23, 24, 37 and 7 more; and 2 more devices\n"
	if !strings.Contains(res.err, want) || strings.Count(res.err, "warning") != 1 {
		t.Errorf("stderr %q, want one warning holding %q", res.err, want)
	}
}

// A row that is not a valid request is not published, so it repeats no
// device: a spreadsheet's lookup that found no id ("#N/A") at several
// rows, or a device at a second row whose comment the worker would
// refuse, is reported invalid_request for those rows, and the warning
// neither names them nor says they are published.
func TestCampaignRunWarningLeavesOutInvalidRows(t *testing.T) {
	t.Parallel()
	url, js := natsWithStreams(t)
	dir := t.TempDir()
	id := strings.Repeat("a", 40)
	long := strings.Repeat("x", 1001)
	p := writeFile(t, dir, "lookup.csv", "machineId,computerDnsName,comment\n#N/A,pc-1,\n"+id+",pc-2,\n#N/A,pc-3,\n"+id+",pc-2,"+long+"\n#N/A,pc-4,\n")
	res := runUntilPublished(t, url, js, 1, "campaign", "run", "--tenant", "contoso", "--csv", p, "--report", filepath.Join(dir, "r.csv"))
	if strings.Contains(res.err, "warning") {
		t.Errorf("stderr %q, want no warning: the repeated rows are not valid requests", res.err)
	}
	if !strings.Contains(res.out, "published 1,") {
		t.Errorf("stdout %q, want the one valid row published", res.out)
	}

	// Valid rows of a device still repeat beside an invalid one.
	q := writeFile(t, dir, "mixed.csv", "machineId,comment\n"+id+",\n"+id+","+long+"\n"+id+",\n")
	res = runUntilPublished(t, url, js, 2, "campaign", "run", "--tenant", "contoso", "--csv", q, "--report", filepath.Join(dir, "q.csv"))
	want := ": 1 row names a device an earlier row names; every row is published, and each answered on its own: machineId \"" + id + "\" at rows 1 and 3\n"
	if !strings.Contains(res.err, want) {
		t.Errorf("stderr %q, want it to hold %q", res.err, want)
	}
}
