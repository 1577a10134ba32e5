package main

import (
	"fmt"
	"strings"
	"testing"

	"github.com/contoso-secops/mde-offboard/offboard"
)

// TestCampaignRunProgressOfACancelledCampaignWhilePaused: a cancelled
// campaign's requests are answered cancelled while an operator's pause
// holds their priority, so a run's progress gives the ETA campaign
// status gives (the 20 requests of another campaign at 10 calls a
// minute), not "paused". Before, the progress said "ETA paused", as if a
// resume were needed, where campaign status gave 1m00s.
func TestCampaignRunProgressOfACancelledCampaignWhilePaused(t *testing.T) {
	t.Parallel()
	e := newEnvLimited(t, 30, 0, "10/1m")
	e.startWorker()
	e.stopWorker() // the rows wait in the stream, behind the consumers it made
	// As runs cut short by their --timeout leave them: the 20 rows of
	// campaign keep, then the 10 of wave, waiting.
	for i, m := range e.machines {
		name, row := "keep", i+1
		if i >= 20 {
			name, row = "wave", i-19
		}
		if _, err := offboard.Publish(t.Context(), e.js, offboard.Subjects{}, tenant, offboard.Bulk,
			offboard.Request{RequestID: fmt.Sprintf("%s-%06d", name, row), MachineID: m.ID, Source: "campaign:" + name}); err != nil {
			t.Fatal(err)
		}
	}
	for _, args := range [][]string{
		{"pause", tenant, "--priority", "bulk"},
		{"campaign", "cancel", "--tenant", tenant, "--name", "wave", "--reason", "wrong list"},
	} {
		if code, _, errs := e.ctl(t.Context(), args...); code != exitOK {
			t.Fatalf("%v: exit %d: %s", args, code, errs)
		}
	}
	if st := e.campaignStatus(t, "wave"); st.Paused || st.ETA != "1m00s" {
		t.Fatalf("campaign status: paused %v, ETA %q; want 1m00s", st.Paused, st.ETA)
	}
	// The campaign's run again: its 10 rows wait, published before.
	p := writeFile(t, t.TempDir(), "wave.csv", idsCSV(e.machines[20:]))
	code, out, errs := e.ctl(t.Context(), "campaign", "run", "--tenant", tenant, "--csv", p, "--name", "wave",
		"--report", p+".again", "--timeout", "1s", "--progress-every", "1h")
	if code != exitFailed || strings.Contains(out, "ETA paused") || !strings.Contains(out, "; waiting 10; ") || !strings.Contains(out, "; ETA 1m00s"+noWorkerNote+"\n") {
		t.Errorf("run of the cancelled campaign while bulk is paused: exit %d, stdout %q, stderr %q; want the ETA of campaign status, 1m00s", code, out, errs)
	}
}
