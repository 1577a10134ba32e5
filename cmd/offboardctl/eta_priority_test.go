package main

import (
	"encoding/json"
	"strings"
	"testing"
)

// A normal-priority campaign is served before the tenant's bulk requests
// (bulk never delays normal), so campaign status counts only the normal
// backlog ahead of it, as campaign run does: at 10 calls a minute its 20
// rows take a minute, whatever bulk campaign waits beside it. It read
// 3m00s, the 20 bulk requests of another campaign counted ahead of it.
// While normal priority is paused, bulk goes on and the normal backlog
// waits: a bulk campaign's ETA leaves it out (it read 3m00s, not 1m00s).
func TestCampaignStatusETAOfANormalPriorityCampaign(t *testing.T) {
	t.Parallel()
	e := newEnvLimited(t, 40, 0, "10/1m")
	e.startWorker()
	e.stopWorker() // the rows wait in the stream, behind the consumers it made
	dir := t.TempDir()
	run := func(name, csv string, args ...string) {
		t.Helper()
		p := writeFile(t, dir, name+".csv", csv)
		args = append([]string{"campaign", "run", "--tenant", tenant, "--csv", p, "--name", name,
			"--report", p + ".report", "--timeout", "1s"}, args...)
		if code, _, errs := e.ctl(t.Context(), args...); code != exitFailed {
			t.Fatalf("campaign run %s: exit %d: %s", name, code, errs)
		}
	}
	run("bulkwave", idsCSV(e.machines[:20]))
	run("urgent", idsCSV(e.machines[20:]), "--priority", "normal")
	status := func(name string) campaignState {
		t.Helper()
		code, out, errs := e.ctl(t.Context(), "campaign", "status", "--tenant", tenant, "--name", name, "--json")
		var st campaignState
		if err := json.Unmarshal([]byte(out), &st); code != exitOK || err != nil {
			t.Fatalf("campaign status %s: exit %d, %v: %s %s", name, code, err, out, errs)
		}
		return st
	}
	if st := status("urgent"); st.Waiting != 20 || st.Backlog != 40 || st.ETA != "1m00s" {
		t.Errorf("normal-priority campaign: waiting %d, backlog %d, ETA %q; want 20, 40 and 1m00s", st.Waiting, st.Backlog, st.ETA)
	}
	if st := status("bulkwave"); st.Waiting != 20 || st.ETA != "3m00s" {
		t.Errorf("bulk campaign behind it: waiting %d, ETA %q; want 20 and 3m00s", st.Waiting, st.ETA)
	}

	// With normal priority paused, bulk is served and the normal
	// backlog waits: it is not ahead of the bulk campaign.
	if code, _, errs := e.ctl(t.Context(), "pause", tenant, "--priority", "normal", "--reason", "t"); code != exitOK {
		t.Fatal(errs)
	}
	if st := status("bulkwave"); st.Waiting != 20 || st.ETA != "1m00s" {
		t.Errorf("bulk campaign with normal paused: waiting %d, ETA %q; want 20 and 1m00s", st.Waiting, st.ETA)
	}
	if st := status("urgent"); st.ETA != "paused" {
		t.Errorf("normal-priority campaign paused: ETA %q", st.ETA)
	}
}

// campaign run counts the same way: with normal priority paused, a bulk
// campaign's progress leaves the normal backlog out of its ETA (its 20
// rows at 10 a minute, a minute, where the 20 paused normal requests
// made it 3m00s).
func TestCampaignRunETAWithNormalPaused(t *testing.T) {
	t.Parallel()
	e := newEnvLimited(t, 40, 0, "10/1m")
	e.startWorker()
	e.stopWorker()
	dir := t.TempDir()
	urgent := writeFile(t, dir, "urgent.csv", idsCSV(e.machines[20:]))
	if code, _, errs := e.ctl(t.Context(), "campaign", "run", "--tenant", tenant, "--csv", urgent, "--priority", "normal",
		"--report", urgent+".report", "--timeout", "1s"); code != exitFailed {
		t.Fatalf("campaign run urgent: exit %d: %s", code, errs)
	}
	if code, _, errs := e.ctl(t.Context(), "pause", tenant, "--priority", "normal", "--reason", "t"); code != exitOK {
		t.Fatal(errs)
	}
	wave := writeFile(t, dir, "wave.csv", idsCSV(e.machines[:20]))
	code, out, errs := e.ctl(t.Context(), "campaign", "run", "--tenant", tenant, "--csv", wave,
		"--report", wave+".report", "--timeout", "1s", "--progress-every", "1h")
	if code != exitFailed || !strings.Contains(out, "; ETA 1m00s\n") {
		t.Errorf("bulk campaign with normal paused: exit %d, stdout %q, stderr %q; want an ETA of 1m00s", code, out, errs)
	}
}
