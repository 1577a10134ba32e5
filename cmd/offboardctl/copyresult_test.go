package main

import (
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/contoso-secops/mde-offboard/offboard"
)

// publishMalformedCopy publishes, under a message id of its own, a copy
// of campaign wave's first row's request that names another tenant: a
// request the worker answers invalid_request.
func publishMalformedCopy(t *testing.T, e *testEnv) {
	t.Helper()
	m := nats.NewMsg(offboard.Subjects{}.Request(tenant, offboard.Normal))
	m.Data = []byte(`{"requestId":"wave-000001","machineId":"` + e.machines[0].ID + `","tenant":"fabrikam"}`)
	m.Header.Set(jetstream.MsgIDHeader, "contoso:wave-000001:copy")
	if _, err := e.js.PublishMsg(t.Context(), m); err != nil {
		t.Fatal(err)
	}
}

// runWaveAllCreated runs campaign wave over every device, waiting up to
// timeout, and checks that the report has each row created.
func runWaveAllCreated(t *testing.T, e *testEnv, timeout string) {
	t.Helper()
	dir := t.TempDir()
	csvPath := writeFile(t, dir, "wave.csv", idsCSV(e.machines))
	report := filepath.Join(dir, "report.csv")
	code, out, errOut := e.ctl(t.Context(), "campaign", "run", "--tenant", tenant, "--csv", csvPath, "--report", report, "--timeout", timeout)
	if code != exitOK {
		t.Fatalf("exit %d: %s %s", code, out, errOut)
	}
	for _, rec := range readReport(t, report)[1:] {
		if rec[4] != offboard.OutcomeCreated {
			t.Errorf("row %s (%s): %q %s %s, want created", rec[0], rec[1], rec[4], rec[5], rec[6])
		}
	}
}

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
	publishMalformedCopy(t, e)
	e.waitFor("the copy's result", time.Minute, func() bool { return len(e.results()) == 1 })

	runWaveAllCreated(t, e, "1m")
	if n := len(e.sim.Actions(e.tenantID)); n != 2 {
		t.Errorf("%d actions, want 2", n)
	}
	code, out, errOut := e.ctl(t.Context(), "campaign", "status", "--tenant", tenant, "--name", "wave", "--json")
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
	publishMalformedCopy(t, e)
	runWaveAllCreated(t, e, "20s")
}

// A row's own request answered invalid_request (a worker whose checks are
// stricter than offboardctl's, during a rolling update) is the row's
// result: its requestSeq is the row's request's place in the stream. The
// run reports the row failed at once, a run again finds that result
// (the row's message id still names that place) and publishes nothing,
// and campaign status counts it (its dead letter carries the row's
// message id). Taken for a malformed copy's, the row was waited for
// until --timeout, and could not be published again within the
// duplicate window.
func TestCampaignRowOwnRequestAnsweredInvalidRequest(t *testing.T) {
	t.Parallel()
	url, js := natsWithStreams(t)
	a := strings.Repeat("a", 40)
	dir := t.TempDir()
	report := filepath.Join(dir, "report.csv")
	args := []string{"campaign", "run", "--tenant", "contoso", "--csv", writeFile(t, dir, "wave.csv", "machineId\n"+a+"\n"),
		"--report", report, "--timeout", "30s"}
	done := ctlAsync(t, url, args...)
	if got := publishedOrEnded(t, js, 1, done); got.ended {
		t.Fatalf("the run ended before publishing: exit %d, stdout %q, stderr %q", got.code, got.out, got.err)
	}
	// As a stricter worker answers it: the result under the request's
	// place, the dead letter, the request deleted.
	s, err := js.Stream(t.Context(), offboard.StreamRequests)
	if err != nil {
		t.Fatal(err)
	}
	req, err := s.GetMsg(t.Context(), 1)
	if err != nil {
		t.Fatal(err)
	}
	dead := nats.NewMsg(offboard.Subjects{}.Dead("contoso"))
	dead.Data = req.Data
	dead.Header.Set(jetstream.MsgIDHeader, req.Header.Get(jetstream.MsgIDHeader))
	dead.Header.Set(offboard.HeaderOriginalSubject, req.Subject)
	dead.Header.Set(offboard.HeaderErrorCode, offboard.CodeInvalidRequest)
	dead.Header.Set(offboard.HeaderErrorMessage, "stricter")
	dead.Header.Set(offboard.HeaderRequestSeq, "1")
	if _, err := js.PublishMsg(t.Context(), dead); err != nil {
		t.Fatal(err)
	}
	publishRaw(t, js, offboard.Subjects{}.Result("contoso"), "result-seq:contoso:x:1",
		`{"requestId":"wave-000001","tenant":"contoso","outcome":"failed","error":{"code":"invalid_request","message":"stricter"},"attempt":1,"requestSeq":1}`)
	if err := s.DeleteMsg(t.Context(), 1); err != nil {
		t.Fatal(err)
	}
	var got ctlExit
	select {
	case got = <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("the run still waits for the row answered invalid_request")
	}
	if got.code != exitOK || !strings.Contains(got.out, "failed 1, no result 0") {
		t.Fatalf("exit %d, stdout %q, stderr %q", got.code, got.out, got.err)
	}
	check := func(when string) {
		t.Helper()
		recs := readReport(t, report)
		if len(recs) != 2 || recs[1][4] != offboard.OutcomeFailed || recs[1][5] != offboard.CodeInvalidRequest {
			t.Errorf("%s: report %v, want row 1 failed invalid_request", when, recs)
		}
	}
	check("first run")

	got.code, got.out, got.err = ctl(t, url, args...)
	if got.code != exitOK || !strings.Contains(got.out, "failed 1, no result 0; published 0") {
		t.Errorf("run again: exit %d, stdout %q, stderr %q", got.code, got.out, got.err)
	}
	check("run again")
	if n := lastRequestSeq(t, js); n != 1 {
		t.Errorf("%d requests stored, want 1", n)
	}

	code, out, errOut := ctl(t, url, "campaign", "status", "--tenant", "contoso", "--name", "wave", "--json")
	var st campaignState
	if err := json.Unmarshal([]byte(out), &st); code != exitOK || err != nil {
		t.Fatalf("campaign status: exit %d, %v: %s %s", code, err, out, errOut)
	}
	if st.Answered != 1 || st.Failed != 1 || st.FailedByCode[offboard.CodeInvalidRequest] != 1 || st.Waiting != 0 {
		t.Errorf("campaign status: %+v; want 1 answered, failed invalid_request", st)
	}
}
