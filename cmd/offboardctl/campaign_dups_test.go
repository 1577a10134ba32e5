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
