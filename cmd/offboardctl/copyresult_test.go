package main

import (
	"encoding/json"
	"path/filepath"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/contoso-secops/mde-offboard/offboard"
)

// A malformed request that reuses a campaign row's request id is answered
// invalid_request under a message id of its own place in the stream: it is
// not the row's request, which was checked before it was published, and
// its answer is not the row's. Taken for it, the row was never published
// (a row with a result is not published again) and the report gave it the
// copy's failure.
func TestCampaignRowNotAnsweredByAMalformedCopy(t *testing.T) {
	t.Parallel()
	e := newEnv(t, 2)
	e.startWorker()
	m := nats.NewMsg(offboard.Subjects{}.Request(tenant, offboard.Normal))
	m.Data = []byte(`{"requestId":"wave-000001","machineId":"` + e.machines[0].ID + `","tenant":"fabrikam"}`)
	m.Header.Set(jetstream.MsgIDHeader, "contoso:wave-000001:copy")
	if _, err := e.js.PublishMsg(t.Context(), m); err != nil {
		t.Fatal(err)
	}
	e.waitFor("the copy's result", time.Minute, func() bool { return len(e.results()) == 1 })

	dir := t.TempDir()
	csvPath := writeFile(t, dir, "wave.csv", idsCSV(e.machines))
	report := filepath.Join(dir, "report.csv")
	code, out, errOut := e.ctl(t.Context(), "campaign", "run", "--tenant", tenant, "--csv", csvPath, "--report", report, "--timeout", "1m")
	if code != exitOK {
		t.Fatalf("exit %d: %s %s", code, out, errOut)
	}
	for _, rec := range readReport(t, report)[1:] {
		if rec[4] != offboard.OutcomeCreated {
			t.Errorf("row %s (%s): %s %s %s, want created", rec[0], rec[1], rec[4], rec[5], rec[6])
		}
	}
	if n := len(e.sim.Actions(e.tenantID)); n != 2 {
		t.Errorf("%d actions, want 2", n)
	}
	code, out, errOut = e.ctl(t.Context(), "campaign", "status", "--tenant", tenant, "--name", "wave", "--json")
	var st campaignState
	if err := json.Unmarshal([]byte(out), &st); code != exitOK || err != nil {
		t.Fatalf("campaign status: exit %d, %v: %s %s", code, err, out, errOut)
	}
	if st.Answered != 2 || st.Created != 2 || st.Failed != 0 {
		t.Errorf("campaign status: answered %d, created %d, failed %d; want 2, 2, 0", st.Answered, st.Created, st.Failed)
	}
}

// A malformed copy of a row's request still waiting in the stream (here
// its priority paused) does not stand for the row's request: the worker
// answers it invalid_request apart from the row, so the row is published
// and gets its own result. Taken for the row's request waiting, the row
// was not published, and the run waited for a result that never came.
func TestCampaignRowPublishedBesideAWaitingMalformedCopy(t *testing.T) {
	t.Parallel()
	e := newEnv(t, 2)
	e.startWorker()
	if code, _, errs := e.ctl(t.Context(), "pause", tenant, "--priority", "normal", "--reason", "t"); code != exitOK {
		t.Fatalf("pause: exit %d: %s", code, errs)
	}
	m := nats.NewMsg(offboard.Subjects{}.Request(tenant, offboard.Normal))
	m.Data = []byte(`{"requestId":"wave-000001","machineId":"` + e.machines[0].ID + `","tenant":"fabrikam"}`)
	m.Header.Set(jetstream.MsgIDHeader, "contoso:wave-000001:copy")
	if _, err := e.js.PublishMsg(t.Context(), m); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	csvPath := writeFile(t, dir, "wave.csv", idsCSV(e.machines))
	report := filepath.Join(dir, "report.csv")
	code, out, errOut := e.ctl(t.Context(), "campaign", "run", "--tenant", tenant, "--csv", csvPath, "--report", report, "--timeout", "20s")
	if code != exitOK {
		t.Fatalf("exit %d: %s %s", code, out, errOut)
	}
	for _, rec := range readReport(t, report)[1:] {
		if rec[4] != offboard.OutcomeCreated {
			t.Errorf("row %s (%s): %q %s %s, want created", rec[0], rec[1], rec[4], rec[5], rec[6])
		}
	}
}
