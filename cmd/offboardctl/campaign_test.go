package main

import (
	"context"
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/contoso-secops/mde-offboard/internal/campaign"
	"github.com/contoso-secops/mde-offboard/internal/mde/mdesim"
	"github.com/contoso-secops/mde-offboard/internal/queue"
	"github.com/contoso-secops/mde-offboard/internal/queue/natstest"
	"github.com/contoso-secops/mde-offboard/internal/testwait"
	"github.com/contoso-secops/mde-offboard/offboard"
)

// want is what a row's report line must say.
type want struct{ outcome, code string }

// writeCampaign writes a CSV of n rows: most name a device by id, every
// tenth by name, and some are broken on purpose.
func writeCampaign(t *testing.T, e *testEnv, path string, n int) map[int]want {
	t.Helper()
	// Two devices under one name: a row naming it must not be guessed.
	for range 2 {
		e.sim.AddMachine(e.tenantID, mdesim.Machine{ID: randHex(20), ComputerDNSName: "twin.contoso.local", OSPlatform: "Windows11"})
	}
	var b strings.Builder
	b.WriteString("machineId,computerDnsName,owner,comment\n")
	wants := map[int]want{}
	for row := 1; row <= n; row++ {
		m := e.machines[row-1]
		switch {
		case row%50 == 7:
			fmt.Fprintf(&b, "%s,,alice,\n", "not-a-device-id") // invalid
			wants[row] = want{offboard.OutcomeFailed, offboard.CodeInvalidRequest}
		case row%50 == 13:
			b.WriteString(",,bob,no device at all\n")
			wants[row] = want{offboard.OutcomeFailed, offboard.CodeInvalidRequest}
		case row%50 == 21:
			b.WriteString(",twin.contoso.local,carol,\n")
			wants[row] = want{offboard.OutcomeFailed, offboard.CodeAmbiguousMachine}
		case row%50 == 33:
			fmt.Fprintf(&b, "%s,,dave,\n", randHex(20)) // no such device
			wants[row] = want{offboard.OutcomeFailed, offboard.CodeMachineNotFound}
		case row%10 == 0:
			fmt.Fprintf(&b, ",%s,erin,\"retired, by name\"\n", m.ComputerDNSName)
			wants[row] = want{offboard.OutcomeCreated, ""}
		default:
			// Both columns, as a plan's CSV: the id names the device.
			fmt.Fprintf(&b, "%s,%s,frank,\n", m.ID, m.ComputerDNSName)
			wants[row] = want{offboard.OutcomeCreated, ""}
		}
	}
	if err := os.WriteFile(path, []byte(b.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	return wants
}

func readReport(t *testing.T, path string) [][]string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = f.Close() }()
	recs, err := csv.NewReader(f).ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	return recs
}

// checkReport checks one line per row in row order with the right
// outcome, code and action.
func checkReport(t *testing.T, recs [][]string, name string, wants map[int]want) {
	t.Helper()
	if got := strings.Join(recs[0], ","); got != "row,requestId,machineId,computerDnsName,outcome,code,message,actionId,actionStatus" {
		t.Fatalf("header %q", got)
	}
	if len(recs)-1 != len(wants) {
		t.Fatalf("%d report lines, want %d", len(recs)-1, len(wants))
	}
	for i, rec := range recs[1:] {
		row := i + 1
		w := wants[row]
		if rec[0] != fmt.Sprint(row) || rec[1] != fmt.Sprintf("%s-%06d", name, row) {
			t.Fatalf("line %d: row %s id %s", row, rec[0], rec[1])
		}
		if rec[4] != w.outcome || rec[5] != w.code {
			t.Errorf("row %d: %s/%s (%s), want %s/%s", row, rec[4], rec[5], rec[6], w.outcome, w.code)
		}
		if (w.outcome == offboard.OutcomeCreated) != (rec[7] != "" && rec[8] != "") {
			t.Errorf("row %d: %s with action %q status %q", row, rec[4], rec[7], rec[8])
		}
		if w.outcome == offboard.OutcomeCreated && rec[2] == "" {
			t.Errorf("row %d: created without a machine id", row)
		}
	}
}

// A 300-row campaign: one report line per row in row order with the right
// outcome, code and action; progress lines while it waits; run again, it
// publishes nothing and writes the same report.
func TestCampaignRunAndRunAgain(t *testing.T) {
	t.Parallel()
	e := newEnv(t, 300)
	e.startWorker()
	dir := t.TempDir()
	csvPath := filepath.Join(dir, "Retire 2026.csv")
	wants := writeCampaign(t, e, csvPath, 300)
	report := filepath.Join(dir, "report.csv")
	args := []string{"campaign", "run", "--tenant", tenant, "--csv", csvPath, "--report", report, "--progress-every", "1ms"}

	code, out, errOut := e.ctl(t.Context(), args...)
	if code != exitOK {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	if !strings.Contains(out, "campaign retire-2026 (contoso): ") || !strings.Contains(out, " answered: created ") || !strings.Contains(out, "ETA ") {
		t.Errorf("no progress lines in %q", out)
	}
	first, err := os.ReadFile(report)
	if err != nil {
		t.Fatal(err)
	}
	checkReport(t, readReport(t, report), "retire-2026", wants)
	e.sim.Actions(e.tenantID) // one action per created row
	if n, created := len(e.sim.Actions(e.tenantID)), countWant(wants, offboard.OutcomeCreated); n != created {
		t.Errorf("%d actions, want %d", n, created)
	}
	for _, r := range e.results() {
		if r.Source != "campaign:retire-2026" || r.Priority != offboard.Bulk {
			t.Fatalf("result %s: source %q priority %q", r.RequestID, r.Source, r.Priority)
		}
	}

	seq := e.lastSeq()
	code, out, errOut = e.ctl(t.Context(), args...)
	if code != exitOK {
		t.Fatalf("second run: exit %d: %s", code, errOut)
	}
	if e.lastSeq() != seq {
		t.Errorf("second run stored %d requests", e.lastSeq()-seq)
	}
	if !strings.Contains(out, "published 0, published before 0, answered before 288") {
		t.Errorf("second run: %q", out)
	}
	second, err := os.ReadFile(report)
	if err != nil {
		t.Fatal(err)
	}
	if string(first) != string(second) {
		t.Errorf("second report differs:\n%s\n---\n%s", first, second)
	}
}

func countWant(wants map[int]want, outcome string) int {
	n := 0
	for _, w := range wants {
		if w.outcome == outcome && w.code == "" {
			n++
		}
	}
	return n
}

// An interrupted run, run again, completes: each request has one result,
// each device one action, and nothing was stored twice. The API answers
// after 50 ms, so that the run is still waiting for most results when it
// is interrupted (without, a worker could answer all 200 before the
// interrupt, and the run ended well).
func TestCampaignResumes(t *testing.T) {
	t.Parallel()
	e := newEnvWith(t, 200, 50*time.Millisecond)
	e.startWorker()
	dir := t.TempDir()
	csvPath := filepath.Join(dir, "q3.csv")
	wants := writeCampaign(t, e, csvPath, 200)
	report := filepath.Join(dir, "q3-report.csv")
	args := []string{"campaign", "run", "--tenant", tenant, "--csv", csvPath, "--report", report}

	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan int)
	go func() {
		code, _, _ := e.ctl(ctx, args...)
		done <- code
	}()
	e.waitFor("30 results of the campaign", time.Minute, func() bool { return len(e.results()) >= 30 })
	cancel()
	if code := testwait.For(t, done, time.Minute, "the interrupted run"); code != exitFailed {
		t.Fatalf("interrupted run: exit %d, want %d", code, exitFailed)
	}
	code, out, errOut := e.ctl(t.Context(), args...)
	if code != exitOK {
		t.Fatalf("resumed run: exit %d: %s %s", code, out, errOut)
	}
	checkReport(t, readReport(t, report), "q3", wants)
	perID := map[string]int{}
	for _, r := range e.results() {
		perID[r.RequestID]++
	}
	for id, n := range perID {
		if n != 1 {
			t.Errorf("%s: %d results", id, n)
		}
	}
	valid := len(wants) - 8 // two invalid rows in each 50
	if len(perID) != valid || e.lastSeq() != uint64(valid) {
		t.Errorf("%d requests answered, %d stored; want %d", len(perID), e.lastSeq(), valid)
	}
	devices := map[string]int{}
	for _, a := range e.sim.Actions(e.tenantID) {
		devices[a.MachineID]++
	}
	for m, n := range devices {
		if n != 1 {
			t.Errorf("device %s: %d actions", m, n)
		}
	}
}

// A cancelled campaign's waiting requests are each answered cancelled,
// once, with a dead letter and no API call, by a worker started after the
// cancel.
func TestCampaignCancel(t *testing.T) {
	t.Parallel()
	e := newEnv(t, 40)
	e.startWorker() // sets up the streams
	e.stopWorker()
	dir := t.TempDir()
	b := idsCSV(e.machines)
	csvPath := filepath.Join(dir, "wave1.csv")
	if err := os.WriteFile(csvPath, []byte(b), 0o600); err != nil {
		t.Fatal(err)
	}
	res := runUntilPublished(t, e.url, e.js, 40, "campaign", "run", "--tenant", tenant, "--csv", csvPath, "--report", filepath.Join(dir, "r.csv"))
	if res.code != exitFailed || !strings.Contains(res.err, "40 rows without a result") {
		t.Fatalf("no worker: exit %d, %s %s", res.code, res.out, res.err)
	}
	code, out, errOut := e.ctl(t.Context(), "campaign", "cancel", "--tenant", tenant, "--name", "wave1", "--reason", "wrong list", "--by", "alice")
	if code != exitOK || !strings.Contains(out, "40 requests waiting will be answered cancelled") {
		t.Fatalf("cancel: exit %d: %s %s", code, out, errOut)
	}
	// The old flag's notice is for people, on standard error.
	if strings.Contains(out, "deprecated") || !strings.Contains(errOut, "--by is deprecated") {
		t.Errorf("--by's notice: stdout %q, stderr %q; want it on stderr alone", out, errOut)
	}
	// A second cancel leaves the first's mark: its time tells the
	// campaign's requests from later look-alikes.
	code, out, errOut = e.ctl(t.Context(), "campaign", "cancel", "--tenant", tenant, "--name", "wave1", "--reason", "again", "--as", "bob")
	if code != exitOK || !strings.Contains(out, "was cancelled already") || !strings.Contains(out, "by alice: wrong list; nothing changed") {
		t.Errorf("second cancel: exit %d: %s %s", code, out, errOut)
	}
	calls := len(e.sim.Calls())
	e.startWorker()
	e.waitFor("40 results", time.Minute, func() bool { return len(e.results()) >= 40 })
	for _, r := range e.results() {
		if r.Outcome != offboard.OutcomeFailed || r.Error.Code != offboard.CodeCancelled {
			t.Errorf("%s: %s %+v", r.RequestID, r.Outcome, r.Error)
		}
	}
	if n := len(e.sim.Calls()) - calls; n != 0 {
		t.Errorf("%d API calls after the cancel", n)
	}
	code, out, _ = e.ctl(t.Context(), "campaign", "status", "--tenant", tenant, "--name", "wave1", "--json")
	var st campaignState
	if err := json.Unmarshal([]byte(out), &st); code != exitOK || err != nil {
		t.Fatalf("status: exit %d, %v: %s", code, err, out)
	}
	if st.Failed != 40 || st.FailedByCode[offboard.CodeCancelled] != 40 || st.Waiting != 0 || st.Cancelled == nil || st.Cancelled.By != "alice" {
		t.Errorf("status %+v", st)
	}
	code, out, _ = e.ctl(t.Context(), "dead", "ls", tenant, "--code", offboard.CodeCancelled, "--json")
	var ds []deadLetter
	if err := json.Unmarshal([]byte(out), &ds); code != exitOK || err != nil || len(ds) != 40 {
		t.Errorf("dead ls: exit %d, %v, %d dead letters", code, err, len(ds))
	}
}

// A campaign run again under its name with another CSV is refused before
// anything is published when a stored result of a row names another
// device than the row: the report would name the wrong devices. The same
// devices (by id, or by name in another case) go on. The stored results
// are dry runs, and so are the runs: a real run would be refused for that.
func TestCampaignRerunWithAnotherCSV(t *testing.T) {
	t.Parallel()
	url, js := natsWithStreams(t)
	a, b, c := strings.Repeat("a", 40), strings.Repeat("b", 40), strings.Repeat("c", 40)
	for _, res := range []offboard.Result{
		{RequestID: "wave-000001", MachineID: a},
		{RequestID: "wave-000002", MachineID: b},
		{RequestID: "wave-000003", MachineID: c, ComputerDNSName: "pc-1.contoso.local"},
	} {
		res.Tenant, res.Outcome, res.Attempt = "contoso", offboard.OutcomeDryRun, 1
		data, err := json.Marshal(res)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := js.Publish(t.Context(), "mde.offboard.result.contoso", data); err != nil {
			t.Fatal(err)
		}
	}
	dir := t.TempDir()
	write := func(name, body string) string { return writeFile(t, dir, name, body) }
	requests := func() uint64 { return lastRequestSeq(t, js) }
	for name, body := range map[string]string{
		"other id":   "machineId,computerDnsName\n" + a + ",\n" + c + ",\n,pc-1.contoso.local\n",
		"other name": "machineId,computerDnsName\n" + a + ",\n" + b + ",\n,pc-9.contoso.local\n",
		// Row 1 was a machineId; a name now, whatever device it names.
		"name for an id": "machineId,computerDnsName\n,pc-5.contoso.local\n" + b + ",\n,pc-1.contoso.local\n",
	} {
		report := filepath.Join(dir, name+"-report.csv")
		code, _, errs := ctl(t, url, "campaign", "run", "--tenant", "contoso", "--csv", write(name+".csv", body), "--name", "wave", "--report", report, "--dry-run")
		if code != exitUsage || !strings.Contains(errs, "new --name") || strings.Count(strings.TrimSpace(errs), "\n") != 0 {
			t.Errorf("%s: exit %d, stderr %q", name, code, errs)
		}
		if _, err := os.Stat(report); err == nil {
			t.Errorf("%s: a report was written", name)
		}
	}
	if n := requests(); n != 0 {
		t.Errorf("%d requests published", n)
	}
	same := write("same.csv", "machineId,computerDnsName\n"+strings.ToUpper(a)+",\n"+b+",\n,PC-1.contoso.local\n")
	if code, out, errs := ctl(t, url, "campaign", "run", "--tenant", "contoso", "--csv", same, "--name", "wave", "--report", filepath.Join(dir, "same-report.csv"), "--dry-run"); code != exitOK {
		t.Errorf("same devices: exit %d, stdout %q, stderr %q", code, out, errs)
	}
}

// A campaign rehearsed with --dry-run and then run for real under the same
// name would get the same request ids, and the worker would answer each
// from its ledger, dry_run: the real run is refused before anything is
// published, and so is a dry run over a name with real results. Under
// another name, each goes on.
func TestDryRunThenRealRunRefused(t *testing.T) {
	t.Parallel()
	e := newEnv(t, 5)
	e.startWorker()
	dir := t.TempDir()
	b := idsCSV(e.machines[:5])
	p := writeFile(t, dir, "retire.csv", b)
	run := func(name string, args ...string) (int, string, string) {
		return e.ctl(t.Context(), append([]string{"campaign", "run", "--tenant", tenant, "--csv", p,
			"--name", name, "--report", filepath.Join(dir, name+"-report.csv")}, args...)...)
	}
	refused := func(what string, code int, stderr string) {
		t.Helper()
		if code != exitUsage || !strings.Contains(stderr, "new --name") || strings.Count(strings.TrimSpace(stderr), "\n") != 0 {
			t.Errorf("%s: exit %d, stderr %q", what, code, stderr)
		}
	}
	if code, out, errs := run("retire", "--dry-run"); code != exitOK {
		t.Fatalf("dry run: exit %d %s %s", code, out, errs)
	}
	published := e.lastSeq()
	code, _, errs := run("retire")
	refused("real run after the dry run", code, errs)
	if !strings.Contains(errs, "dry_run") {
		t.Errorf("real run after the dry run: stderr %q does not name the dry run", errs)
	}
	if n := e.lastSeq(); n != published {
		t.Errorf("real run after the dry run: %d requests published", n-published)
	}
	if n := len(e.sim.Actions(e.tenantID)); n != 0 {
		t.Errorf("%d actions after a dry run", n)
	}

	if code, out, errs := run("retire-real"); code != exitOK {
		t.Fatalf("real run under another name: exit %d %s %s", code, out, errs)
	}
	if n := len(e.sim.Actions(e.tenantID)); n != 5 {
		t.Errorf("real run under another name: %d actions for 5 rows", n)
	}
	published = e.lastSeq()
	code, _, errs = run("retire-real", "--dry-run")
	refused("dry run after the real run", code, errs)
	if n := e.lastSeq(); n != published {
		t.Errorf("dry run after the real run: %d requests published", n-published)
	}
}

// The same, while the earlier run's requests still wait unanswered (the
// tenant paused, the run given up with --timeout): the new run's requests
// would be dropped as duplicates of them and answered as they are. A real
// run after a waiting dry run, and a dry run after a waiting real run, are
// refused before anything is published.
func TestRunAfterWaitingRunRefused(t *testing.T) {
	t.Parallel()
	e := newEnv(t, 3)
	e.startWorker()
	dir := t.TempDir()
	p := writeFile(t, dir, "retire.csv", idsCSV(e.machines[:3]))
	run := func(name string, args ...string) (int, string, string) {
		return e.ctl(t.Context(), append([]string{"campaign", "run", "--tenant", tenant, "--csv", p,
			"--name", name, "--report", filepath.Join(dir, name+"-report.csv"), "--timeout", "1s"}, args...)...)
	}
	refused := func(what string, code int, stderr string) {
		t.Helper()
		if code != exitUsage || !strings.Contains(stderr, "still waiting") || !strings.Contains(stderr, "new --name") ||
			strings.Count(strings.TrimSpace(stderr), "\n") != 0 {
			t.Errorf("%s: exit %d, stderr %q", what, code, stderr)
		}
	}
	if code, _, errs := e.ctl(t.Context(), "pause", tenant, "--reason", "t"); code != exitOK {
		t.Fatal(errs)
	}
	if code, out, errs := run("retire", "--dry-run"); code != exitFailed {
		t.Fatalf("dry run while paused: exit %d, want 1 (timeout): %s %s", code, out, errs)
	}
	published := e.lastSeq()
	code, _, errs := run("retire")
	refused("real run after the waiting dry run", code, errs)
	if code, out, errs := run("retire-real"); code != exitFailed {
		t.Fatalf("real run while paused: exit %d, want 1 (timeout): %s %s", code, out, errs)
	}
	published += 3
	code, _, errs = run("retire-real", "--dry-run")
	refused("dry run after the waiting real run", code, errs)
	if n := e.lastSeq(); n != published {
		t.Errorf("%d requests published by the refused runs", n-published)
	}

	// Resumed: the dry run's rows answered dry_run, the real run's created.
	if code, _, errs := e.ctl(t.Context(), "resume", tenant, "--reason", "t"); code != exitOK {
		t.Fatal(errs)
	}
	e.waitFor("6 results", time.Minute, func() bool { return len(e.results()) == 6 })
	if n := len(e.sim.Actions(e.tenantID)); n != 3 {
		t.Errorf("%d actions, want 3 (the real run's)", n)
	}
}

// A campaign run again under its name with another CSV (rows deleted
// after an interrupted run) is refused before anything is published when
// a row's request from the earlier run still waits and names another
// device: the row's request would be dropped as its duplicate, and the
// report would give the row that other device's result. The same devices
// (by id in another case, or by name) go on.
func TestRerunWithAnotherCSVWhileRequestsWait(t *testing.T) {
	t.Parallel()
	url, js := natsWithStreams(t)
	a, b := strings.Repeat("a", 40), strings.Repeat("b", 40)
	for i, body := range []string{
		`{"requestId":"wave-000001","machineId":"` + a + `","source":"campaign:wave"}`,
		`{"requestId":"wave-000002","machineId":"` + b + `","source":"campaign:wave"}`,
		`{"requestId":"wave-000003","computerDnsName":"pc-1.contoso.local","source":"campaign:wave"}`,
	} {
		m := nats.NewMsg("mde.offboard.request.contoso.bulk")
		m.Data = []byte(body)
		m.Header.Set(jetstream.MsgIDHeader, fmt.Sprintf("contoso:wave-%06d", i+1))
		if _, err := js.PublishMsg(t.Context(), m); err != nil {
			t.Fatal(err)
		}
	}
	dir := t.TempDir()
	published := lastRequestSeq(t, js)
	for name, body := range map[string]string{
		"row deleted": "machineId,computerDnsName\n" + b + ",\n,pc-1.contoso.local\n",
		"other name":  "machineId,computerDnsName\n" + a + ",\n" + b + ",\n,pc-9.contoso.local\n",
		"id for name": "machineId,computerDnsName\n" + a + ",\n" + b + ",\n" + a + ",pc-1.contoso.local\n",
	} {
		report := filepath.Join(dir, name+"-report.csv")
		code, _, errs := ctl(t, url, "campaign", "run", "--tenant", "contoso", "--csv", writeFile(t, dir, name+".csv", body),
			"--name", "wave", "--report", report, "--timeout", "1s")
		if code != exitUsage || !strings.Contains(errs, "new --name") || strings.Count(strings.TrimSpace(errs), "\n") != 0 {
			t.Errorf("%s: exit %d, stderr %q", name, code, errs)
		}
		if _, err := os.Stat(report); err == nil {
			t.Errorf("%s: a report was written", name)
		}
	}
	if n := lastRequestSeq(t, js); n != published {
		t.Errorf("%d requests published by the refused runs", n-published)
	}
	same := writeFile(t, dir, "same.csv", "machineId,computerDnsName\n"+strings.ToUpper(a)+",\n"+b+",pc-2.contoso.local\n,PC-1.contoso.local\n")
	if code, out, errs := ctl(t, url, "campaign", "run", "--tenant", "contoso", "--csv", same, "--name", "wave",
		"--report", filepath.Join(dir, "same-report.csv"), "--timeout", "1s"); code != exitFailed {
		t.Errorf("same devices: exit %d, want 1 (no worker: timeout), stdout %q, stderr %q", code, out, errs)
	}
}

// A row answered for another device while the run waits (the worker
// answers a request id from its ledger; the earlier run's result, no
// longer stored, could not be checked before publishing) ends the run:
// one line that says to give a new --name, exit 1, and the report does
// not give the row the other device's result.
func TestRowAnsweredForAnotherDevice(t *testing.T) {
	t.Parallel()
	url, js := natsWithStreams(t)
	a, b := strings.Repeat("a", 40), strings.Repeat("b", 40)
	dir := t.TempDir()
	report := filepath.Join(dir, "report.csv")
	published := lastRequestSeq(t, js)
	done := ctlAsync(t, url, "campaign", "run", "--tenant", "contoso", "--name", "wave", "--report", report, "--timeout", "30s",
		"--csv", writeFile(t, dir, "wave.csv", "machineId,computerDnsName\n"+a+",\n,pc-1.contoso.local\n"))
	if got := publishedOrEnded(t, js, published+2, done); got.ended {
		t.Fatalf("the run ended before it published: exit %d, stdout %q, stderr %q", got.code, got.out, got.err)
	}
	answer := func(row int, body string) {
		publishRaw(t, js, offboard.Subjects{}.Result("contoso"), fmt.Sprintf("result:contoso:wave-%06d", row), body)
	}
	// Row 2, by name, answered with its name and the id it resolved to:
	// its own. Row 1 answered for device b.
	answer(2, `{"requestId":"wave-000002","tenant":"contoso","machineId":"`+strings.Repeat("c", 40)+`","computerDnsName":"PC-1.contoso.local","outcome":"created","attempt":1}`)
	answer(1, `{"requestId":"wave-000001","tenant":"contoso","machineId":"`+b+`","outcome":"created","attempt":1}`)
	var got ctlExit
	select {
	case got = <-done:
	case <-time.After(time.Minute):
		t.Fatal("the run did not end")
	}
	if got.code != exitFailed || !strings.Contains(got.err, "row 1 (wave-000001) was answered for \""+b+"\"") ||
		!strings.Contains(got.err, "new --name") || strings.Count(strings.TrimSpace(got.err), "\n") != 0 {
		t.Errorf("exit %d, stdout %q, stderr %q", got.code, got.out, got.err)
	}
	body, err := os.ReadFile(report)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(body), b) || strings.Count(string(body), "created") != 1 {
		t.Errorf("report:\n%s", body)
	}
}

// A row answered for another device ends the run while it still
// publishes: the rows not published yet stay unpublished, where they
// were all published before the run ended.
func TestRowAnsweredForAnotherDeviceStopsThePublishing(t *testing.T) {
	t.Parallel()
	url, js := natsWithStreams(t)
	const rows = 100000
	dir := t.TempDir()
	published := lastRequestSeq(t, js)
	done := ctlAsync(t, url, "campaign", "run", "--tenant", "contoso", "--name", "long", "--report", filepath.Join(dir, "report.csv"),
		"--max-pending", "1", "--csv", writeFile(t, dir, "long.csv", numberedCSV(rows)))
	if got := publishedOrEnded(t, js, published+1, done); got.ended {
		t.Fatalf("the run ended before it published: exit %d, stdout %q, stderr %q", got.code, got.out, got.err)
	}
	publishRaw(t, js, offboard.Subjects{}.Result("contoso"), "result:contoso:long-000001",
		`{"requestId":"long-000001","tenant":"contoso","machineId":"`+strings.Repeat("f", 40)+`","outcome":"created","attempt":1}`)
	var got ctlExit
	select {
	case got = <-done:
	case <-time.After(time.Minute):
		t.Fatal("the run did not end")
	}
	if got.code != exitFailed || !strings.Contains(got.err, "was answered for") {
		t.Fatalf("exit %d, stdout %q, stderr %q", got.code, got.out, got.err)
	}
	if n := lastRequestSeq(t, js) - published; n == rows {
		t.Errorf("every row was published after the run was ended")
	}
}

// A row's host name with a final dot names the same device as its result
// without it, as the worker matches names: neither the check of earlier
// results nor that of results as they come takes it for another device.
func TestRowNameWithAFinalDot(t *testing.T) {
	t.Parallel()
	url, js := natsWithStreams(t)
	answer := func(row int, name string) {
		publishRaw(t, js, offboard.Subjects{}.Result("contoso"), fmt.Sprintf("result:contoso:dot-%06d", row),
			fmt.Sprintf(`{"requestId":"dot-%06d","tenant":"contoso","machineId":"%s","computerDnsName":"%s","outcome":"created","attempt":1}`,
				row, strings.Repeat(strconv.Itoa(row), 40), name))
	}
	answer(1, "pc-1.contoso.local")
	dir := t.TempDir()
	published := lastRequestSeq(t, js)
	done := ctlAsync(t, url, "campaign", "run", "--tenant", "contoso", "--name", "dot", "--report", filepath.Join(dir, "report.csv"), "--timeout", "30s",
		"--csv", writeFile(t, dir, "dot.csv", "computerDnsName\npc-1.contoso.local.\nPC-2.contoso.local.\n"))
	got := publishedOrEnded(t, js, published+1, done) // ended before publishing: refused
	if !got.ended {
		answer(2, "pc-2.contoso.local")
		select {
		case got = <-done:
		case <-time.After(time.Minute):
			t.Fatal("the run did not end")
		}
	}
	if got.code != exitOK || !strings.Contains(got.out, "created 2") {
		t.Errorf("exit %d, stdout %q, stderr %q", got.code, got.out, got.err)
	}
}

// A run of a campaign one of whose failed rows was retried (dead retry),
// the retry still waiting, waits for the retry's result: it neither ends
// at once with the earlier failure nor publishes the row again.
func TestRunWaitsForARetryOfAFailedRow(t *testing.T) {
	t.Parallel()
	url, js := natsWithStreams(t)
	a, b := strings.Repeat("a", 40), strings.Repeat("b", 40)
	publish := func(subject, msgID, body string) { publishRaw(t, js, subject, msgID, body) }
	result := offboard.Subjects{}.Result("contoso")
	publish(result, "result:contoso:wave-000001", `{"requestId":"wave-000001","tenant":"contoso","machineId":"`+a+`","outcome":"failed","error":{"code":"api_error","message":"503"},"attempt":1}`)
	publish(result, "result:contoso:wave-000002", `{"requestId":"wave-000002","tenant":"contoso","machineId":"`+b+`","outcome":"created","attempt":1}`)
	publish("mde.offboard.request.contoso.bulk", "contoso:wave-000001:2", `{"requestId":"wave-000001","machineId":"`+a+`","source":"campaign:wave","attempt":2}`)
	published := lastRequestSeq(t, js)

	dir := t.TempDir()
	report := filepath.Join(dir, "report.csv")
	done := ctlAsync(t, url, "campaign", "run", "--tenant", "contoso", "--name", "wave", "--report", report, "--timeout", "30s",
		"--csv", writeFile(t, dir, "wave.csv", "machineId\n"+a+"\n"+b+"\n"))
	select {
	case got := <-done:
		t.Fatalf("the run ended before the retry's result: exit %d, stdout %q, stderr %q", got.code, got.out, got.err)
	case <-time.After(time.Second):
	}
	publish(result, "result:contoso:wave-000001:2", `{"requestId":"wave-000001","tenant":"contoso","machineId":"`+a+`","outcome":"created","attempt":2}`)
	var got ctlExit
	select {
	case got = <-done:
	case <-time.After(time.Minute):
		t.Fatal("the run did not end after the retry's result")
	}
	if got.code != exitOK || !strings.Contains(got.out, "created 2, already_pending 0, dry_run 0, failed 0") {
		t.Errorf("exit %d, stdout %q, stderr %q", got.code, got.out, got.err)
	}
	if n := lastRequestSeq(t, js); n != published {
		t.Errorf("%d requests published; the row's retry was waiting", n-published)
	}
}

// The CSV saved over while the campaign runs (rows deleted, one added)
// changes nothing of the run: it publishes, and reports, the rows as they
// were when it started; the report names each row's device with its own
// result, and no row is published that the run does not follow.
func TestCampaignCSVSavedOverDuringTheRun(t *testing.T) {
	t.Parallel()
	e := newEnv(t, 4)
	e.startWorker()
	if code, _, errs := e.ctl(t.Context(), "pause", tenant, "--reason", "t"); code != exitOK {
		t.Fatal(errs)
	}
	sub, err := e.js.Conn().SubscribeSync(offboard.Subjects{}.Request(tenant, offboard.Bulk))
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = sub.Unsubscribe() }()
	dir := t.TempDir()
	p := writeFile(t, dir, "wave.csv", idsCSV(e.machines[:3]))
	report := filepath.Join(dir, "report.csv")
	done := make(chan int, 1)
	go func() {
		code, _, errs := e.ctl(t.Context(), "campaign", "run", "--tenant", tenant, "--csv", p, "--report", report)
		if code != exitOK {
			t.Logf("campaign run: exit %d: %s", code, errs)
		}
		done <- code
	}()
	for range 3 {
		if _, err := sub.NextMsg(30 * time.Second); err != nil {
			t.Fatalf("the run's rows not published: %v", err)
		}
	}
	// Saved over: the first row deleted, a fourth device added.
	writeFile(t, dir, "wave.csv", idsCSV(e.machines[1:4]))
	if code, _, errs := e.ctl(t.Context(), "resume", tenant); code != exitOK {
		t.Fatal(errs)
	}
	if code := testwait.For(t, done, time.Minute, "the campaign run, resumed"); code != exitOK {
		t.Fatalf("campaign run: exit %d", code)
	}
	recs := readReport(t, report)
	if len(recs) != 4 {
		t.Fatalf("report of %d lines, want the header and 3 rows: %v", len(recs), recs)
	}
	for i, rec := range recs[1:] {
		if rec[2] != e.machines[i].ID || rec[4] != offboard.OutcomeCreated {
			t.Errorf("row %d: %v, want %s created", i+1, rec, e.machines[i].ID)
		}
	}
	if n := e.lastSeq(); n != 3 {
		t.Errorf("%d requests stored, want the 3 rows", n)
	}
}

// Campaign wave-2 has 30 requests waiting; wave, whose name is a prefix
// of it, has none: its status and cancel count none of wave-2's.
func TestCampaignStatusOfANamePrefix(t *testing.T) {
	t.Parallel()
	e := newEnv(t, 30)
	e.startWorker()
	e.stopWorker()
	dir := t.TempDir()
	b := idsCSV(e.machines)
	p := writeFile(t, dir, "wave-2.csv", b)
	if res := runUntilPublished(t, e.url, e.js, 30, "campaign", "run", "--tenant", tenant, "--csv", p, "--report", filepath.Join(dir, "r.csv")); res.code != exitFailed {
		t.Fatalf("run of wave-2 without a worker: exit %d %s %s", res.code, res.out, res.err)
	}
	status := func(name string) campaignState {
		t.Helper()
		code, out, errs := e.ctl(t.Context(), "campaign", "status", "--tenant", tenant, "--name", name, "--json")
		var st campaignState
		if err := json.Unmarshal([]byte(out), &st); code != exitOK || err != nil {
			t.Fatalf("status of %s: exit %d %v %s %s", name, code, err, out, errs)
		}
		return st
	}
	if st := status("wave-2"); st.Waiting != 30 {
		t.Errorf("wave-2: %d requests waiting, want 30", st.Waiting)
	}
	// A name never run is not shown as a campaign with nothing left to
	// do: a typo would read as finished.
	neverRun := func() {
		t.Helper()
		code, out, errs := e.ctl(t.Context(), "campaign", "status", "--tenant", tenant, "--name", "wave", "--json")
		if code != exitFailed || out != "" || !strings.Contains(errs, "has no campaign wave") || strings.Count(strings.TrimSpace(errs), "\n") != 0 {
			t.Errorf("status of wave (never run): exit %d: %q %q", code, out, errs)
		}
	}
	neverRun()
	// Nor is a campaign never run cancelled: the name is a mistake, and
	// its mark would cancel a later campaign of that name.
	code, out, errs := e.ctl(t.Context(), "campaign", "cancel", "--tenant", tenant, "--name", "wave", "--reason", "test")
	if code != exitFailed || !strings.Contains(errs, "has no campaign wave") || strings.Contains(out, "cancelled") {
		t.Errorf("cancel of wave: exit %d: %s %s", code, out, errs)
	}
	neverRun() // a mark would be shown
}

// A campaign's row that failed and was retried (dead retry: its message id
// ends in :<attempt>) waits again until the retry's result: campaign
// status counts it.
func TestCampaignStatusCountsARetryWaiting(t *testing.T) {
	t.Parallel()
	e := newEnv(t, 0)
	e.startWorker()
	if _, err := offboard.Publish(t.Context(), e.js, offboard.Subjects{}, tenant, offboard.Bulk,
		offboard.Request{RequestID: "camp-000001", MachineID: randHex(20), Source: "campaign:camp"}); err != nil {
		t.Fatal(err)
	}
	e.waitFor("the result", time.Minute, func() bool { return len(e.results()) == 1 })
	e.waitFor("the request answered", time.Minute, func() bool { return e.requestsWaiting() == 0 })
	e.stopWorker()
	status := func() campaignState {
		t.Helper()
		code, out, errs := e.ctl(t.Context(), "campaign", "status", "--tenant", tenant, "--name", "camp", "--json")
		var st campaignState
		if err := json.Unmarshal([]byte(out), &st); code != exitOK || err != nil {
			t.Fatalf("status: exit %d %v %s %s", code, err, out, errs)
		}
		return st
	}
	if st := status(); st.Failed != 1 || st.Waiting != 0 {
		t.Fatalf("before the retry: failed %d, waiting %d", st.Failed, st.Waiting)
	}
	if code, out, errs := e.ctl(t.Context(), "dead", "retry", tenant, "--all"); code != exitOK || !strings.Contains(out, "retried camp-000001 attempt 2") {
		t.Fatalf("dead retry: exit %d %s %s", code, out, errs)
	}
	if st := status(); st.Failed != 1 || st.Waiting != 1 || st.Backlog != 1 {
		t.Errorf("the retry waiting (%d requests in the stream): failed %d, waiting %d, backlog %d", e.requestsWaiting(), st.Failed, st.Waiting, st.Backlog)
	}
}

// Once the rows are published, and until the tenant's backlog is read
// again, the ETA still counts them: they left the rows not published for
// the stream, where the backlog read before did not see them.
func TestCampaignETAAfterPublishing(t *testing.T) {
	t.Parallel()
	e := newEnv(t, 30)
	e.startWorker()
	e.stopWorker() // the rows wait in the stream, behind the consumers it made
	dir := t.TempDir()
	p := writeFile(t, dir, "wave.csv", idsCSV(e.machines))
	// Interrupted once its progress counts the 30 rows published.
	res := runUntilLine(t, e.url, "published 30 (before 0)", "campaign", "run", "--tenant", tenant, "--csv", p, "--report", filepath.Join(dir, "r.csv"),
		"--rate", "10/1m", "--progress-every", "1ms")
	if res.code != exitFailed || !strings.Contains(res.out, "published 30 (before 0); ETA 2m00s") || strings.Contains(res.out, "ETA 0s") {
		t.Errorf("campaign run: exit %d, stdout %q, stderr %q", res.code, res.out, res.err)
	}
}

// Without --rate, a campaign's ETA is taken at the tenant's own offboard
// limits, as its worker recorded them on the tenant's consumers (status
// reads them so), not at the documented 100/1m: a tenant limited to 10/1m
// drains 30 rows in 2 minutes, not 18 seconds.
func TestCampaignETAAtTheTenantsLimits(t *testing.T) {
	t.Parallel()
	e := newEnvLimited(t, 30, 0, "10/1m")
	e.startWorker()
	e.stopWorker() // the rows wait in the stream, behind the consumers it made
	dir := t.TempDir()
	p := writeFile(t, dir, "wave.csv", idsCSV(e.machines))
	// Interrupted once its progress counts the 30 rows published.
	res := runUntilLine(t, e.url, "published 30 (before 0)", "campaign", "run", "--tenant", tenant, "--csv", p, "--report", filepath.Join(dir, "r.csv"),
		"--progress-every", "1ms")
	if res.code != exitFailed || !strings.Contains(res.out, "published 30 (before 0); ETA 2m00s") {
		t.Errorf("campaign run: exit %d, stdout %q, stderr %q", res.code, res.out, res.err)
	}
	code, out, errs := e.ctl(t.Context(), "campaign", "status", "--tenant", tenant, "--name", "wave", "--json")
	var st campaignState
	if err := json.Unmarshal([]byte(out), &st); code != exitOK || err != nil || st.ETA != "2m00s" {
		t.Errorf("campaign status: exit %d, %v, ETA %q, want 2m00s: %s %s", code, err, st.ETA, out, errs)
	}
}

// While an operator's pause holds a campaign's requests, its progress and
// campaign status say "paused", not an ETA of 0s.
func TestCampaignETAWhilePaused(t *testing.T) {
	t.Parallel()
	e := newEnv(t, 5)
	e.startWorker()
	if code, _, errs := e.ctl(t.Context(), "pause", tenant, "--priority", "bulk"); code != exitOK {
		t.Fatalf("pause: exit %d: %s", code, errs)
	}
	dir := t.TempDir()
	csvPath := filepath.Join(dir, "held.csv")
	writeCampaign(t, e, csvPath, 5)
	res := runUntilPublished(t, e.url, e.js, 5, "campaign", "run", "--tenant", tenant, "--csv", csvPath, "--report", filepath.Join(dir, "r.csv"),
		"--progress-every", "1ms")
	if res.code != exitFailed || !strings.Contains(res.out, "; ETA paused") || strings.Contains(res.out, "ETA 0s") {
		t.Errorf("campaign run while paused: exit %d, stdout %q, stderr %q", res.code, res.out, res.err)
	}
	code, out, errs := e.ctl(t.Context(), "campaign", "status", "--tenant", tenant, "--name", "held", "--json")
	var st campaignState
	if err := json.Unmarshal([]byte(out), &st); code != exitOK || err != nil || st.ETA != "paused" || !st.Paused || st.Waiting != 5 {
		t.Errorf("campaign status while paused: exit %d, %v, %s %s", code, err, out, errs)
	}
	// No time while paused, as offboardctl status --json says it: a 0
	// reads as a campaign with nothing left.
	var raw map[string]any
	if err := json.Unmarshal([]byte(out), &raw); err != nil || raw["etaSeconds"] != nil {
		t.Errorf("campaign status while paused: etaSeconds %v, want null: %v %s", raw["etaSeconds"], err, out)
	}
	if code, _, errs := e.ctl(t.Context(), "resume", tenant); code != exitOK {
		t.Fatalf("resume: exit %d: %s", code, errs)
	}
	_, out, _ = e.ctl(t.Context(), "campaign", "status", "--tenant", tenant, "--name", "held", "--json")
	st = campaignState{}
	if err := json.Unmarshal([]byte(out), &st); err != nil || st.Paused || st.ETA == "paused" {
		t.Errorf("campaign status after the resume: %v %s", err, out)
	}
	raw = nil
	if err := json.Unmarshal([]byte(out), &raw); err != nil {
		t.Errorf("campaign status after the resume: %v %s", err, out)
	} else if _, ok := raw["etaSeconds"].(float64); !ok {
		t.Errorf("campaign status after the resume: etaSeconds %v, want a number: %s", raw["etaSeconds"], out)
	}
}

// Once no row of the campaign waits, its progress shows no time left,
// whatever the tenant's backlog: a campaign of no rows, or one whose last
// result came while other requests of the tenant still wait, is done.
func TestCampaignProgressETAWhenNothingWaits(t *testing.T) {
	t.Parallel()
	r := &campaignRun{f: runFlags{tenant: tenant, name: "wave"}, windows: campaign.DefaultWindows}
	r.ahead.Store(5000)
	r.aheadRead.Store(true)
	for _, c := range []campaign.Counts{{}, {Rows: 3, Created: 2, Failed: 1}} {
		if got := r.snapshot(c, c.Answered(), time.Second).etaText(); got != "0s" {
			t.Errorf("%+v: ETA %s, want 0s", c, got)
		}
	}
	if got := r.snapshot(campaign.Counts{Rows: 3, Created: 2, Waiting: 1}, 2, time.Second).etaText(); got == "0s" {
		t.Errorf("a row waiting behind 5000 requests: ETA %s", got)
	}
}

// A campaign run of a tenant no worker has set up (a typo) is refused
// before anything is published, as pause, resume and budget refuse it:
// each row would be answered unknown_tenant, with a dead letter each.
// --unknown-tenant publishes all the same.
func TestCampaignRunOfAnUnknownTenant(t *testing.T) {
	t.Parallel()
	url, js := natsWithStreams(t)
	dir := t.TempDir()
	csvPath := writeFile(t, dir, "wave.csv", fmt.Sprintf("machineId\n%040x\n%040x\n%040x\n", 1, 2, 3))
	report := filepath.Join(dir, "wave-report.csv")
	requests := func() uint64 { return lastRequestSeq(t, js) }
	code, out, errs := ctl(t, url, "campaign", "run", "--tenant", "contosso", "--csv", csvPath, "--report", report, "--timeout", "1s")
	if code != exitFailed || out != "" || strings.Count(strings.TrimSpace(errs), "\n") != 0 ||
		!strings.Contains(errs, "tenant contosso: no worker has set up its consumers") || !strings.Contains(errs, "nothing published") ||
		!strings.Contains(errs, "--unknown-tenant") {
		t.Errorf("run of an unknown tenant: exit %d, stdout %q, stderr %q", code, out, errs)
	}
	if n := requests(); n != 0 {
		t.Errorf("%d requests published to the unknown tenant", n)
	}
	if _, err := os.Stat(report); err == nil {
		t.Error("a report was written")
	}
	// As for a tenant about to be added: published, left waiting.
	res := runUntilPublished(t, url, js, 3, "campaign", "run", "--tenant", "contosso", "--csv", csvPath, "--report", report, "--unknown-tenant")
	if res.code != exitFailed || !strings.Contains(res.err, "run the same command again") {
		t.Errorf("run --unknown-tenant: exit %d, stderr %q; want the rows published and the run interrupted", res.code, res.err)
	}
	if n := requests(); n != 3 {
		t.Errorf("run --unknown-tenant: %d requests published, want 3", n)
	}
	// A known tenant goes on as before.
	res = runUntilPublished(t, url, js, 3, "campaign", "run", "--tenant", "fabrikam", "--csv", csvPath, "--report", report)
	if res.code != exitFailed || !strings.Contains(res.err, "run the same command again") || requests() != 6 {
		t.Errorf("run of a known tenant: exit %d, stderr %q, %d requests", res.code, res.err, requests())
	}
}

// An interrupted campaign run's summary counts every publish the stream
// stored: the acknowledgements outstanding at the interrupt are awaited
// (a few seconds at most) before it is written, where they were dropped
// and "published" fell short of what the stream held.
func TestInterruptedRunCountsItsPublishes(t *testing.T) {
	t.Parallel()
	url, js := natsWithStreams(t)
	dir := t.TempDir()
	csvPath := writeFile(t, dir, "big.csv", numberedCSV(20000))
	stored := func() uint64 { return lastRequestSeq(t, js) }
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	done := runInBackground(ctx, "--nats-url", url, "campaign", "run", "--tenant", "contoso", "--csv", csvPath,
		"--report", filepath.Join(dir, "r.csv"))
	for deadline := time.Now().Add(time.Minute); stored() < 500; time.Sleep(time.Millisecond) {
		select {
		case res := <-done:
			t.Fatalf("the run ended with %d of 20000 rows stored, before it was interrupted: exit %d, stderr %q", stored(), res.code, res.err)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d of 20000 rows stored after a minute, want 500 before the interrupt", stored())
		}
	}
	cancel()
	res := testwait.For(t, done, time.Minute, "the interrupted run")
	n := stored()
	if res.code != exitFailed || n == 20000 {
		t.Fatalf("exit %d with %d of 20000 rows stored: not interrupted mid-publish; stderr %q", res.code, n, res.err)
	}
	var published, before int
	i := strings.Index(res.out, "campaign big (tenant contoso): ")
	if i < 0 {
		t.Fatalf("no summary: %q", res.out)
	}
	i += strings.Index(res.out[i:], "; published ")
	if _, err := fmt.Sscanf(res.out[i:], "; published %d, published before %d", &published, &before); err != nil {
		t.Fatalf("summary %q: %v", res.out[i:], err)
	}
	t.Logf("interrupted with %d rows stored; summary: %s", n, strings.TrimSpace(res.out[i:]))
	if uint64(published) != n || before != 0 || strings.Contains(res.out, "unconfirmed") {
		t.Errorf("summary says published %d (before %d), the stream stored %d: %q", published, before, n, res.out[i:])
	}
}

// ran is how a command run in the background ended.
type ran struct {
	code     int
	out, err string
}

// runInBackground runs the command line under ctx in a goroutine; the
// channel gets how it ended.
func runInBackground(ctx context.Context, args ...string) <-chan ran {
	done := make(chan ran, 1)
	go func() {
		var out, errb strings.Builder
		code := runContext(ctx, args, &out, &errb)
		done <- ran{code, out.String(), errb.String()}
	}()
	return done
}

// lastRequestSeq is the request stream's last sequence: how many requests
// were ever stored in it.
func lastRequestSeq(t *testing.T, js jetstream.JetStream) uint64 {
	t.Helper()
	s, err := js.Stream(t.Context(), offboard.StreamRequests)
	if err != nil {
		t.Fatal(err)
	}
	info, err := s.Info(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	return info.State.LastSeq
}

// A row whose retry waiting in the request stream has an attempt past
// 255 (a retry published by hand with a high attempt) is answered by that
// retry's result: the run ends once it comes.
func TestRunWaitsForARetryOfAHighAttempt(t *testing.T) {
	t.Parallel()
	url, js := natsWithStreams(t)
	a := strings.Repeat("a", 40)
	publish := func(subject, msgID, body string) { publishRaw(t, js, subject, msgID, body) }
	result := offboard.Subjects{}.Result("contoso")
	publish(result, "result:contoso:high-000001", `{"requestId":"high-000001","tenant":"contoso","machineId":"`+a+`","outcome":"failed","error":{"code":"api_error","message":"503"},"attempt":1}`)
	publish("mde.offboard.request.contoso.bulk", "contoso:high-000001:300", `{"requestId":"high-000001","machineId":"`+a+`","source":"campaign:high","attempt":300}`)

	dir := t.TempDir()
	done := ctlAsync(t, url, "campaign", "run", "--tenant", "contoso", "--name", "high", "--report", filepath.Join(dir, "report.csv"), "--timeout", "20s",
		"--csv", writeFile(t, dir, "high.csv", "machineId\n"+a+"\n"))
	select {
	case got := <-done:
		t.Fatalf("the run ended before the retry's result: exit %d, stdout %q, stderr %q", got.code, got.out, got.err)
	case <-time.After(time.Second):
	}
	publish(result, "result:contoso:high-000001:300", `{"requestId":"high-000001","tenant":"contoso","machineId":"`+a+`","outcome":"created","attempt":300}`)
	got := <-done
	if got.code != exitOK || !strings.Contains(got.out, "created 1, already_pending 0, dry_run 0, failed 0") {
		t.Errorf("exit %d, stdout %q, stderr %q", got.code, got.out, got.err)
	}
}

// ctlExit is how an offboardctl run ended.
type ctlExit struct {
	ended    bool
	code     int
	out, err string
}

// ctlAsync runs offboardctl in the background; its end comes on the
// channel.
func ctlAsync(t *testing.T, url string, args ...string) <-chan ctlExit {
	done := make(chan ctlExit, 1)
	go func() {
		code, out, errs := ctl(t, url, args...)
		done <- ctlExit{true, code, out, errs}
	}()
	return done
}

// publishRaw publishes body on subject with a message id, as a worker or
// a publisher would.
func publishRaw(t *testing.T, js jetstream.JetStream, subject, msgID, body string) {
	t.Helper()
	m := nats.NewMsg(subject)
	m.Data = []byte(body)
	m.Header.Set(jetstream.MsgIDHeader, msgID)
	if _, err := js.PublishMsg(t.Context(), m); err != nil {
		t.Fatal(err)
	}
}

// publishedOrEnded waits until the request stream's last sequence is at
// least seq, or the run on done ended first (then its end).
func publishedOrEnded(t *testing.T, js jetstream.JetStream, seq uint64, done <-chan ctlExit) ctlExit {
	t.Helper()
	deadline := time.After(30 * time.Second)
	for lastRequestSeq(t, js) < seq {
		select {
		case got := <-done:
			return got
		case <-deadline:
			t.Fatalf("the run published nothing in 30s")
		case <-time.After(10 * time.Millisecond):
		}
	}
	return ctlExit{}
}

// runUntilPublished runs offboardctl against url and interrupts it, as
// Ctrl-C does, once the request stream holds n requests more than when it
// began, or returns how it ended if it ended first. A run that no worker
// answers ends so with its rows published however long the publishing
// took; a short --timeout, which counts the time before the first publish
// too, ended it before on a busy machine, with nothing published.
func runUntilPublished(t *testing.T, url string, js jetstream.JetStream, n uint64, args ...string) ran {
	t.Helper()
	before := lastRequestSeq(t, js)
	ctx, interrupt := context.WithCancelCause(t.Context())
	defer interrupt(nil)
	done := runInBackground(ctx, append([]string{"--nats-url", url}, args...)...)
	deadline := time.After(time.Minute)
	for lastRequestSeq(t, js) < before+n {
		select {
		case res := <-done:
			return res
		case <-deadline:
			t.Fatalf("%d of %d requests published in a minute", lastRequestSeq(t, js)-before, n)
		case <-time.After(10 * time.Millisecond):
		}
	}
	interrupt(errors.New("interrupt signal received"))
	return testwait.For(t, done, time.Minute, "the interrupted run")
}

// A run again while the earlier run's rows still wait in the request
// stream (a paused tenant, a campaign longer than a day) publishes none
// of them again: once the stream's duplicate window has passed since
// they were published, a publish with the same message id is stored as a
// second request of the row.
func TestRunAgainAfterTheDuplicateWindowPublishesNothingWaiting(t *testing.T) {
	t.Parallel()
	_, js := natstest.Connect(t)
	s := queue.Settings{Tenants: []string{"contoso"}, Duplicates: 500 * time.Millisecond}
	if _, err := queue.Ensure(t.Context(), js, s); err != nil {
		t.Fatal(err)
	}
	url := js.Conn().ConnectedUrl()
	dir := t.TempDir()
	csvPath := writeFile(t, dir, "slow.csv", "machineId\n"+strings.Repeat("a", 40)+"\n"+strings.Repeat("b", 40)+"\n")
	args := []string{"campaign", "run", "--tenant", "contoso", "--csv", csvPath, "--report", filepath.Join(dir, "r.csv"), "--progress-every", "1ms"}
	if res := runUntilPublished(t, url, js, 2, args...); res.code != exitFailed || lastRequestSeq(t, js) != 2 {
		t.Fatalf("first run: exit %d, %d requests stored: %s %s", res.code, lastRequestSeq(t, js), res.out, res.err)
	}
	time.Sleep(time.Second) // the duplicate window passes
	// Interrupted once it has passed over both rows, published before
	// (or after a minute, if it never says so).
	ctx, interrupt := context.WithTimeout(t.Context(), time.Minute)
	defer interrupt()
	out := &cancelAtLine{part: "(before 2)", cancel: interrupt}
	var errb strings.Builder
	code := runContext(ctx, append([]string{"--nats-url", url}, args...), out, &errb)
	if code != exitFailed {
		t.Errorf("second run: exit %d, want 1 (interrupted): %s %s", code, out, errb.String())
	}
	if n := lastRequestSeq(t, js); n != 2 {
		t.Errorf("second run stored %d requests more; want none", n-2)
	}
	if !strings.Contains(out.String(), "published 0, published before 2") {
		t.Errorf("second run's summary: %q", out)
	}
}

// runUntilLine runs offboardctl against url and interrupts it, as Ctrl-C
// does, at the first line of its standard output that contains part, or
// after untilLineAtMost if none does.
func runUntilLine(t *testing.T, url, part string, args ...string) ran {
	t.Helper()
	ctx, interrupt := context.WithTimeout(t.Context(), untilLineAtMost)
	defer interrupt()
	out := &cancelAtLine{part: part, cancel: interrupt}
	var errb strings.Builder
	code := runContext(ctx, append([]string{"--nats-url", url}, args...), out, &errb)
	return ran{code, out.String(), errb.String()}
}

// untilLineAtMost bounds a run of runUntilLine that never shows its line:
// a stuck run, not a slow one. A run publishing 3000 rows one
// acknowledgement at a time, 2 s on a quiet machine, had published 941
// after a minute at load 8.
const untilLineAtMost = 5 * time.Minute

// cancelAtLine cancels a context at the first line written that contains
// part: an operator's Ctrl-C once the progress shows it.
type cancelAtLine struct {
	strings.Builder
	part   string
	cancel func()
}

func (w *cancelAtLine) Write(p []byte) (int, error) {
	if strings.Contains(string(p), w.part) {
		w.cancel()
	}
	return w.Builder.Write(p)
}

// TestCampaignRunOfOneRow: the summary of a campaign of one row says
// "1 row", not "1 rows".
func TestCampaignRunOfOneRow(t *testing.T) {
	t.Parallel()
	e := newEnv(t, 1)
	e.startWorker()
	dir := t.TempDir()
	csvPath := writeFile(t, dir, "one.csv", idsCSV(e.machines))
	code, out, errOut := e.ctl(t.Context(), "campaign", "run", "--tenant", tenant, "--csv", csvPath,
		"--report", filepath.Join(dir, "one-report.csv"), "--progress-every", "1h")
	if code != exitOK {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	if !strings.Contains(out, "campaign one (tenant contoso): 1 row: created 1,") {
		t.Errorf("summary: %q", out)
	}
}
