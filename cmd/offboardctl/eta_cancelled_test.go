package main

import (
	"encoding/json"
	"strings"
	"testing"
)

// A cancelled campaign's requests are answered without a call, so its
// ETA counts only the tenant's other requests waiting: at 10 calls a
// minute, the 20 of another campaign, not those 20 and its own 10.
func TestCampaignStatusETAOfACancelledCampaign(t *testing.T) {
	t.Parallel()
	e := keepBesideCancelledWave(t)
	if st := e.campaignStatus(t, "wave"); st.Waiting != 10 || st.Backlog != 30 || st.ETA != "1m00s" {
		t.Errorf("cancelled campaign: waiting %d, backlog %d, ETA %q; want 10, 30 and 1m00s", st.Waiting, st.Backlog, st.ETA)
	}
	// The cancelled campaign's requests, answered without a call, take no
	// place in the quota of the other's: before, it read 2m00s.
	if st := e.campaignStatus(t, "keep"); st.Waiting != 20 || st.Backlog != 30 || st.ETA != "1m00s" {
		t.Errorf("the other campaign: waiting %d, backlog %d, ETA %q; want 20, 30 and 1m00s", st.Waiting, st.Backlog, st.ETA)
	}
}

// keepBesideCancelledWave has the 20 rows of campaign keep, then the 10
// of campaign wave, waiting at 10 calls a minute, no worker running, and
// wave cancelled.
func keepBesideCancelledWave(t *testing.T) *testEnv {
	t.Helper()
	e := newEnvLimited(t, 30, 0, "10/1m")
	e.startWorker()
	e.stopWorker() // the rows wait in the stream, behind the consumers it made
	dir := t.TempDir()
	e.runUnanswered(t, dir, "keep", idsCSV(e.machines[:20]))
	e.runUnanswered(t, dir, "wave", idsCSV(e.machines[20:]))
	if code, _, errs := e.ctl(t.Context(), "campaign", "cancel", "--tenant", tenant, "--name", "wave", "--reason", "wrong list"); code != exitOK {
		t.Fatalf("campaign cancel: exit %d: %s", code, errs)
	}
	return e
}

// runUnanswered runs campaign NAME of csv (saved in dir) with no worker
// running: it publishes every row and ends at its --timeout, exit 1. The
// timeout bounds the publishing too: 3s, where 1s cut it short on a
// loaded machine.
func (e *testEnv) runUnanswered(t *testing.T, dir, name, csv string, args ...string) {
	t.Helper()
	p := writeFile(t, dir, name+".csv", csv)
	args = append([]string{"campaign", "run", "--tenant", tenant, "--csv", p, "--name", name,
		"--report", p + ".report", "--timeout", "3s"}, args...)
	if code, _, errs := e.ctl(t.Context(), args...); code != exitFailed {
		t.Fatalf("campaign run %s: exit %d: %s", name, code, errs)
	}
}

// campaignStatus is campaign status --json of campaign name.
func (e *testEnv) campaignStatus(t *testing.T, name string) campaignState {
	t.Helper()
	code, out, errs := e.ctl(t.Context(), "campaign", "status", "--tenant", tenant, "--name", name, "--json")
	var st campaignState
	if err := json.Unmarshal([]byte(out), &st); code != exitOK || err != nil {
		t.Fatalf("campaign status %s: exit %d, %v: %s %s", name, code, err, out, errs)
	}
	return st
}

// A campaign run behind another campaign's requests that were cancelled:
// those are answered without a call, so at 10 calls a minute its 20 rows
// take a minute, not the two the 30 requests would (as the status of the
// first test counts it).
func TestCampaignRunETABehindACancelledCampaign(t *testing.T) {
	t.Parallel()
	e := newEnvLimited(t, 40, 0, "10/1m")
	e.startWorker()
	e.stopWorker()
	dir := t.TempDir()
	e.runUnanswered(t, dir, "wrong", idsCSV(e.machines[20:30]))
	if code, _, errs := e.ctl(t.Context(), "campaign", "cancel", "--tenant", tenant, "--name", "wrong", "--reason", "wrong list"); code != exitOK {
		t.Fatalf("campaign cancel: exit %d: %s", code, errs)
	}
	wave := writeFile(t, dir, "wave.csv", idsCSV(e.machines[:20]))
	code, out, errs := e.ctl(t.Context(), "campaign", "run", "--tenant", tenant, "--csv", wave,
		"--report", wave+".report", "--timeout", "1s", "--progress-every", "1h")
	if code != exitFailed || !strings.Contains(out, "; ETA 1m00s"+noWorkerNote+"\n") {
		t.Errorf("campaign behind a cancelled one: exit %d, stdout %q, stderr %q; want an ETA of 1m00s", code, out, errs)
	}
}
