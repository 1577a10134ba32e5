package main

import (
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
	e.runUnanswered(t, dir, "bulkwave", idsCSV(e.machines[:20]))
	e.runUnanswered(t, dir, "urgent", idsCSV(e.machines[20:]), "--priority", "normal")
	if st := e.campaignStatus(t, "urgent"); st.Waiting != 20 || st.Backlog != 40 || st.ETA != "1m00s" {
		t.Errorf("normal-priority campaign: waiting %d, backlog %d, ETA %q; want 20, 40 and 1m00s", st.Waiting, st.Backlog, st.ETA)
	}
	if st := e.campaignStatus(t, "bulkwave"); st.Waiting != 20 || st.ETA != "3m00s" {
		t.Errorf("bulk campaign behind it: waiting %d, ETA %q; want 20 and 3m00s", st.Waiting, st.ETA)
	}

	// With normal priority paused, bulk is served and the normal
	// backlog waits: it is not ahead of the bulk campaign.
	if code, _, errs := e.ctl(t.Context(), "pause", tenant, "--priority", "normal", "--reason", "t"); code != exitOK {
		t.Fatal(errs)
	}
	if st := e.campaignStatus(t, "bulkwave"); st.Waiting != 20 || st.ETA != "1m00s" {
		t.Errorf("bulk campaign with normal paused: waiting %d, ETA %q; want 20 and 1m00s", st.Waiting, st.ETA)
	}
	if st := e.campaignStatus(t, "urgent"); st.ETA != "paused" {
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
	e.runUnanswered(t, dir, "urgent", idsCSV(e.machines[20:]), "--priority", "normal")
	if code, _, errs := e.ctl(t.Context(), "pause", tenant, "--priority", "normal", "--reason", "t"); code != exitOK {
		t.Fatal(errs)
	}
	wave := writeFile(t, dir, "wave.csv", idsCSV(e.machines[:20]))
	code, out, errs := e.ctl(t.Context(), "campaign", "run", "--tenant", tenant, "--csv", wave,
		"--report", wave+".report", "--timeout", "1s", "--progress-every", "1h")
	if code != exitFailed || !strings.Contains(out, "; ETA 1m00s"+noWorkerNote+"\n") {
		t.Errorf("bulk campaign with normal paused: exit %d, stdout %q, stderr %q; want an ETA of 1m00s", code, out, errs)
	}
}
