package main

import (
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/contoso-secops/mde-offboard/offboard"
	"github.com/nats-io/nats.go/jetstream"
)

// TestAnsweredBeforeCountsOnlyEarlierAnswers: a run again whose row's
// earlier request still waits when it starts counts that row "published
// before", also when its result comes while the run is still publishing
// the rows ahead of it: the row was not answered before the run. It was
// counted "answered before" then, and "published before" left it out.
func TestAnsweredBeforeCountsOnlyEarlierAnswers(t *testing.T) {
	t.Parallel()
	url, js := natsWithStreams(t)
	const rows = 3000
	last := fmt.Sprintf("%040x", rows+1)
	dir := t.TempDir()
	csvPath := writeFile(t, dir, "ans.csv", numberedCSV(rows)+last+"\n")
	// The last row's request, published by an earlier run, waits.
	id := fmt.Sprintf("ans-%06d", rows+1)
	publishRaw(t, js, offboard.Subjects{}.Request(tenant, offboard.Bulk), tenant+":"+id,
		`{"requestId":"`+id+`","machineId":"`+last+`","source":"campaign:ans"}`)
	// Its result comes once the run publishes its first row, long before
	// the run comes to the last (one acknowledgement outstanding at most).
	runAnsweredWhilePublishing(t, url, js, csvPath, rows, func() {
		publishRaw(t, js, offboard.Subjects{}.Result(tenant), "result:"+tenant+":"+id,
			`{"requestId":"`+id+`","tenant":"contoso","machineId":"`+last+`","outcome":"created","attempt":1}`)
	}, "the row whose request waited at the start")
}

// runAnsweredWhilePublishing runs the campaign of csvPath (rows numbered
// rows and a last one), calls answer once the run has published
// its first row, long before it comes to the last (one acknowledgement
// outstanding at most), and wants the last row created, counted
// published before and none answered before (which, for the error).
func runAnsweredWhilePublishing(t *testing.T, url string, js jetstream.JetStream, csvPath string, rows int, answer func(), which string) {
	t.Helper()
	before := lastRequestSeq(t, js)
	answered := make(chan struct{})
	go func() {
		defer close(answered)
		for deadline := time.Now().Add(time.Minute); lastRequestSeq(t, js) == before; time.Sleep(5 * time.Millisecond) {
			if time.Now().After(deadline) {
				return
			}
		}
		answer()
	}()
	res := runUntilLine(t, url, fmt.Sprintf("published %d (before", rows), "campaign", "run", "--tenant", tenant, "--csv", csvPath,
		"--report", filepath.Join(filepath.Dir(csvPath), "r.csv"), "--max-pending", "1", "--progress-every", "50ms")
	<-answered
	if !strings.Contains(res.out, "created 1,") {
		t.Fatalf("the last row's result was not taken: stdout %q, stderr %q", res.out, res.err)
	}
	if !strings.Contains(res.out, fmt.Sprintf("published %d, published before 1, answered before 0;", rows)) {
		t.Errorf("summary %q: want %s published before, and none answered before", lastLine(res.out), which)
	}
}

// lastLine is the last line of out.
func lastLine(out string) string {
	lines := strings.Split(strings.TrimSpace(out), "\n")
	return lines[len(lines)-1]
}

// TestRowAnsweredDuringThePublishingIsNotAnsweredBefore: a row that
// another run of the campaign (from another shell) published and got
// answered while this run was publishing the rows ahead of it had no
// result when this run started: it is published before, as its publish
// here would have been dropped as a duplicate, not answered before.
func TestRowAnsweredDuringThePublishingIsNotAnsweredBefore(t *testing.T) {
	t.Parallel()
	url, js := natsWithStreams(t)
	const rows = 3000
	last := fmt.Sprintf("%040x", rows+1)
	dir := t.TempDir()
	csvPath := writeFile(t, dir, "other.csv", numberedCSV(rows)+last+"\n")
	id := fmt.Sprintf("other-%06d", rows+1)
	// Once this run publishes its first row, the other run publishes the
	// last row and it is answered.
	runAnsweredWhilePublishing(t, url, js, csvPath, rows, func() {
		publishRaw(t, js, offboard.Subjects{}.Request(tenant, offboard.Bulk), tenant+":"+id,
			`{"requestId":"`+id+`","machineId":"`+last+`","source":"campaign:other"}`)
		publishRaw(t, js, offboard.Subjects{}.Result(tenant), "result:"+tenant+":"+id,
			`{"requestId":"`+id+`","tenant":"contoso","machineId":"`+last+`","outcome":"created","attempt":1}`)
	}, "the row answered during the publishing")
}
