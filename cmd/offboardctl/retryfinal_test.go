package main

import (
	"context"
	"encoding/json"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/contoso-secops/mde-offboard/offboard"
)

// A campaign run again while a retry of a row already created waits in
// the request stream (published by hand, attempt 2) ends with the row
// created: the worker answers the retry from its ledger with the stored
// result of attempt 1, under that attempt's message id, which the results
// stream drops as a repeat, so no result of attempt 2 ever comes. The run
// neither waits for one until --timeout nor exits 1.
func TestRunAgainWithARetryOfACreatedRowWaiting(t *testing.T) {
	t.Parallel()
	e := newEnv(t, 1)
	e.startWorker()
	dir := t.TempDir()
	csvPath := writeFile(t, dir, "wave.csv", idsCSV(e.machines))
	if code, out, errs := e.ctl(t.Context(), "campaign", "run", "--tenant", tenant, "--name", "wave", "--csv", csvPath,
		"--report", filepath.Join(dir, "first.csv"), "--timeout", "1m"); code != exitOK || !strings.Contains(out, "created 1") {
		t.Fatalf("first run: exit %d, stdout %q, stderr %q", code, out, errs)
	}
	e.stopWorker()
	publishRaw(t, e.js, offboard.Subjects{}.Request(tenant, offboard.Bulk), tenant+":wave-000001:2",
		`{"requestId":"wave-000001","machineId":"`+e.machines[0].ID+`","source":"campaign:wave","attempt":2}`)

	// The worker is started again once the run shows the row waiting:
	// it answers the retry while the run watches.
	waiting := make(chan struct{})
	out := &signalAtLine{part: "waiting 1;", seen: waiting}
	done := make(chan ctlExit, 1)
	go func() {
		var errb strings.Builder
		code := runContext(context.Background(), []string{"--nats-url", e.url, "campaign", "run", "--tenant", tenant, "--name", "wave",
			"--csv", csvPath, "--report", filepath.Join(dir, "again.csv"), "--timeout", "20s", "--progress-every", "1h"}, out, &errb)
		done <- ctlExit{true, code, out.String(), errb.String()}
	}()
	var got ctlExit
	select {
	case got = <-done:
	case <-waiting:
		e.startWorker()
		select {
		case got = <-done:
		case <-time.After(time.Minute):
			t.Fatal("the run did not end")
		}
	case <-time.After(time.Minute):
		t.Fatal("the run neither ended nor showed its progress")
	}
	if got.code != exitOK || !strings.Contains(got.out, "created 1, already_pending 0, dry_run 0, failed 0") {
		t.Errorf("run again: exit %d, stdout %q, stderr %q; requests waiting %d", got.code, got.out, got.err, e.requestsWaiting())
	}
	if n := len(e.sim.Actions(e.tenantID)); n != 1 {
		t.Errorf("%d offboard actions; want the first run's one", n)
	}
}

// signalAtLine closes seen at the first write that contains part.
type signalAtLine struct {
	mu   sync.Mutex
	b    strings.Builder
	part string
	seen chan struct{}
	once sync.Once
}

func (w *signalAtLine) Write(p []byte) (int, error) {
	if strings.Contains(string(p), w.part) {
		w.once.Do(func() { close(w.seen) })
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.Write(p)
}

func (w *signalAtLine) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.String()
}

// A retry of a row already created, waiting in the request stream, is no
// row waiting: the worker answers it with the row's stored result, which
// the results stream drops as a repeat. campaign status counts the row
// created alone, not also waiting.
func TestCampaignStatusARetryOfACreatedRowIsNotWaiting(t *testing.T) {
	t.Parallel()
	e := newEnv(t, 1)
	e.startWorker()
	dir := t.TempDir()
	if code, out, errs := e.ctl(t.Context(), "campaign", "run", "--tenant", tenant, "--name", "wave", "--csv", writeFile(t, dir, "wave.csv", idsCSV(e.machines)),
		"--report", filepath.Join(dir, "report.csv"), "--timeout", "1m"); code != exitOK || !strings.Contains(out, "created 1") {
		t.Fatalf("run: exit %d, stdout %q, stderr %q", code, out, errs)
	}
	e.stopWorker()
	publishRaw(t, e.js, offboard.Subjects{}.Request(tenant, offboard.Bulk), tenant+":wave-000001:2",
		`{"requestId":"wave-000001","machineId":"`+e.machines[0].ID+`","source":"campaign:wave","attempt":2}`)
	code, out, errs := e.ctl(t.Context(), "campaign", "status", "--tenant", tenant, "--name", "wave", "--json")
	var st campaignState
	if err := json.Unmarshal([]byte(out), &st); code != exitOK || err != nil {
		t.Fatalf("status: exit %d %v %s %s", code, err, out, errs)
	}
	if st.Created != 1 || st.Waiting != 0 {
		t.Errorf("created %d, waiting %d; want the row created alone", st.Created, st.Waiting)
	}
}
