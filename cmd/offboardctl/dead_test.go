package main

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/contoso-secops/mde-offboard/internal/mde/mdesim"
	"github.com/contoso-secops/mde-offboard/offboard"
)

// A dead letter retried keeps its request id and gets a result of its own
// with attempt 2; a retry of a created request makes no second action.
func TestDeadRetry(t *testing.T) {
	t.Parallel()
	e := newEnv(t, 1)
	e.startWorker()
	late := mdesim.Machine{ID: randHex(20), ComputerDNSName: "late.contoso.local", OSPlatform: "Windows11"}
	publish := func(r offboard.Request) {
		t.Helper()
		if _, err := offboard.Publish(t.Context(), e.js, offboard.Subjects{}, tenant, offboard.Normal, r); err != nil {
			t.Fatal(err)
		}
	}
	publish(offboard.Request{RequestID: "chg-1", MachineID: late.ID})          // not there yet
	publish(offboard.Request{RequestID: "chg-2", MachineID: e.machines[0].ID}) // created
	e.waitFor("two results", time.Minute, func() bool { return len(e.results()) == 2 })

	code, out, errOut := e.ctl(t.Context(), "dead", "ls", tenant)
	if code != exitOK || !strings.Contains(out, "chg-1") || !strings.Contains(out, offboard.CodeMachineNotFound) || strings.Contains(out, "chg-2") {
		t.Fatalf("dead ls: exit %d: %s %s", code, out, errOut)
	}
	e.sim.AddMachine(e.tenantID, late)
	code, out, errOut = e.ctl(t.Context(), "dead", "retry", tenant, "--all")
	if code != exitOK || !strings.Contains(out, "retried chg-1 attempt 2") {
		t.Fatalf("dead retry: exit %d: %s %s", code, out, errOut)
	}
	e.waitFor("the retry's result", time.Minute, func() bool { return len(e.results()) == 3 })
	got := e.results()[2]
	if got.RequestID != "chg-1" || got.Attempt != 2 || got.Outcome != offboard.OutcomeCreated {
		t.Errorf("retry's result: %s attempt %d %s", got.RequestID, got.Attempt, got.Outcome)
	}
	// Again: the retry was answered since; none is published.
	if code, out, _ = e.ctl(t.Context(), "dead", "retry", tenant, "--all"); code != exitOK || !strings.Contains(out, "0 retried, 0 retried before (the stream dropped the repeat), 0 not retried, 1 answered since") {
		t.Errorf("second retry: exit %d: %s", code, out)
	}

	// A retry of the created request is answered from the ledger, under
	// the stored result's message id: the results stream drops the repeat.
	publish(offboard.Request{RequestID: "chg-2", MachineID: e.machines[0].ID, Attempt: 2})
	e.waitFor("the retry answered", time.Minute, func() bool { return e.requestsWaiting() == 0 })
	if n := len(e.sim.Actions(e.tenantID)); n != 2 {
		t.Errorf("%d actions, want 2 (one per device)", n)
	}
	for _, r := range e.results() {
		if r.RequestID == "chg-2" && (r.Outcome != offboard.OutcomeCreated || r.Attempt != 1) {
			t.Errorf("chg-2: %s attempt %d", r.Outcome, r.Attempt)
		}
	}
}

// Several dead letters of one request id: one retry, from the latest.
func TestDeadRetryOncePerRequestFromTheLatest(t *testing.T) {
	t.Parallel()
	e := newEnv(t, 0)
	e.startWorker()
	e.stopWorker() // dead letters published by hand
	dead := func(body string, code ...string) {
		m := nats.NewMsg(offboard.Subjects{}.Dead(tenant))
		m.Data = []byte(body)
		m.Header.Set(offboard.HeaderErrorCode, append(code, offboard.CodeAPIError)[0])
		m.Header.Set(offboard.HeaderOriginalSubject, offboard.Subjects{}.Request(tenant, offboard.Bulk))
		m.Header.Set("Traceparent", "00-abc-def-01")
		if _, err := e.js.PublishMsg(t.Context(), m); err != nil {
			t.Fatal(err)
		}
	}
	dead(`{"requestId":"x-1","machineId":"` + strings.Repeat("a", 40) + `"}`)
	dead(`{"attempt": 2, "requestId":"x-1","machineId":"` + strings.Repeat("a", 40) + `"}`)
	dead(`{"requestId":"x-2","computerDnsName":"b.contoso.local","attempt":1}`)
	// x-3 failed api_error, then, retried, was cancelled: its latest
	// failure is not api_error, and --code api_error leaves it alone.
	dead(`{"requestId":"x-3","machineId":"` + strings.Repeat("c", 40) + `"}`)
	dead(`{"attempt": 2, "requestId":"x-3","machineId":"`+strings.Repeat("c", 40)+`"}`, offboard.CodeCancelled)
	if code, out, errOut := e.ctl(t.Context(), "dead", "retry", tenant, "--all", "--code", offboard.CodeAPIError); code != exitOK || !strings.Contains(out, "2 retried") {
		t.Fatalf("exit %d: %s %s", code, out, errOut)
	}
	var got []jetstream.Msg
	err := scan(t.Context(), e.js, offboard.StreamRequests, offboard.Subjects{}.Request(tenant, offboard.Bulk), func(m jetstream.Msg) { got = append(got, m) })
	if err != nil || len(got) != 2 {
		t.Fatalf("%d retries (%v)", len(got), err)
	}
	wantBody := []string{
		`{"attempt": 3, "requestId":"x-1","machineId":"` + strings.Repeat("a", 40) + `"}`,
		`{"requestId":"x-2","computerDnsName":"b.contoso.local","attempt":2}`,
	}
	wantID := []string{"contoso:x-1:3", "contoso:x-2:2"}
	for i, m := range got {
		if string(m.Data()) != wantBody[i] || m.Headers().Get(jetstream.MsgIDHeader) != wantID[i] || m.Headers().Get("Traceparent") == "" {
			t.Errorf("retry %d: %s %v", i, m.Data(), m.Headers())
		}
	}
}

// dead retry --seq of an older dead letter of a request id retries the
// request from its latest dead letter, as --all does: re-sending the older
// attempt would be dropped as a repeat and retry nothing. --code is the
// latest dead letter's, as with --all.
func TestDeadRetrySeqOfAnOlderDeadLetter(t *testing.T) {
	t.Parallel()
	e := newEnv(t, 0)
	e.startWorker()
	e.stopWorker() // dead letters published by hand
	dead := func(body, code string) { e.publishBulkDead(t, body, code) }
	a, c := strings.Repeat("a", 40), strings.Repeat("c", 40)
	dead(`{"requestId":"x-1","machineId":"`+a+`"}`, offboard.CodeMachineNotFound)             // 1
	dead(`{"attempt":2,"requestId":"x-1","machineId":"`+a+`"}`, offboard.CodeMachineNotFound) // 2
	dead(`{"requestId":"x-3","machineId":"`+c+`"}`, offboard.CodeAPIError)                    // 3
	dead(`{"attempt":2,"requestId":"x-3","machineId":"`+c+`"}`, offboard.CodeCancelled)       // 4
	retries := func() []jetstream.Msg {
		t.Helper()
		var got []jetstream.Msg
		err := scan(t.Context(), e.js, offboard.StreamRequests, offboard.Subjects{}.Request(tenant, offboard.Bulk), func(m jetstream.Msg) { got = append(got, m) })
		if err != nil {
			t.Fatal(err)
		}
		return got
	}

	code, out, errOut := e.ctl(t.Context(), "dead", "retry", tenant, "--seq", "1")
	if code != exitOK || !strings.Contains(out, "retried x-1 attempt 3 (dead letter 2,") || !strings.Contains(out, "1 retried, 0 retried before") {
		t.Errorf("retry --seq 1: exit %d: %s %s", code, out, errOut)
	}
	got := retries()
	if len(got) != 1 || got[0].Headers().Get(jetstream.MsgIDHeader) != "contoso:x-1:3" ||
		string(got[0].Data()) != `{"attempt":3,"requestId":"x-1","machineId":"`+a+`"}` {
		t.Fatalf("%d retries: %v", len(got), got)
	}
	// The latest one now: the same retry, dropped as a repeat.
	if code, out, errOut := e.ctl(t.Context(), "dead", "retry", tenant, "--seq", "2"); code != exitOK || !strings.Contains(out, "0 retried, 1 retried before") {
		t.Errorf("retry --seq 2: exit %d: %s %s", code, out, errOut)
	}
	// x-3 failed api_error, then was cancelled: --code api_error does not
	// retry it, even by the older dead letter's sequence.
	code, out, errOut = e.ctl(t.Context(), "dead", "retry", tenant, "--seq", "3", "--code", offboard.CodeAPIError)
	if code != exitFailed || !strings.Contains(errOut, "latest dead letter is 4, with code cancelled") || strings.Count(strings.TrimSpace(errOut), "\n") != 0 {
		t.Errorf("retry --seq 3 --code api_error: exit %d: %s %s", code, out, errOut)
	}
	if n := len(retries()); n != 1 {
		t.Errorf("%d retries, want 1", n)
	}
}

// dead retry retries a request id as one more than the highest attempt of
// its dead letters, from the latest one's body: attempt 1 failed, its
// retry (2) failed, then a dead letter of attempt 1 again (a copy sent
// anew). The latest's attempt + 1, 2, was published before: the stream
// dropped it as a repeat, and the request could not be retried for the
// duplicate window while dead retry said it had been.
func TestDeadRetryIsOneMoreThanTheHighestAttempt(t *testing.T) {
	t.Parallel()
	e := newEnv(t, 0)
	e.startWorker()
	e.stopWorker() // dead letters published by hand
	a := strings.Repeat("a", 40)
	for _, body := range []string{
		`{"requestId":"x-1","machineId":"` + a + `"}`,             // 1
		`{"attempt":2,"requestId":"x-1","machineId":"` + a + `"}`, // 2
		`{"requestId":"x-1","machineId":"` + a + `","x":1}`,       // 3
	} {
		m := nats.NewMsg(offboard.Subjects{}.Dead(tenant))
		m.Data = []byte(body)
		m.Header.Set(offboard.HeaderErrorCode, offboard.CodeMachineNotFound)
		m.Header.Set(offboard.HeaderOriginalSubject, offboard.Subjects{}.Request(tenant, offboard.Normal))
		if _, err := e.js.PublishMsg(t.Context(), m); err != nil {
			t.Fatal(err)
		}
	}
	// Attempt 2's retry was published before (it failed: dead letter 2).
	retry2 := nats.NewMsg(offboard.Subjects{}.Request(tenant, offboard.Normal))
	retry2.Data = []byte(`{"attempt":2,"requestId":"x-1","machineId":"` + a + `"}`)
	retry2.Header.Set(jetstream.MsgIDHeader, offboard.RequestMsgID(tenant, "x-1", 2))
	if _, err := e.js.PublishMsg(t.Context(), retry2); err != nil {
		t.Fatal(err)
	}

	code, out, errOut := e.ctl(t.Context(), "dead", "retry", tenant, "--all")
	if code != exitOK || !strings.Contains(out, "retried x-1 attempt 3 (dead letter 3,") || !strings.Contains(out, "1 retried, 0 retried before") {
		t.Fatalf("dead retry --all: exit %d: %s %s", code, out, errOut)
	}
	var got []jetstream.Msg
	err := scan(t.Context(), e.js, offboard.StreamRequests, offboard.Subjects{}.Request(tenant, offboard.Normal), func(m jetstream.Msg) { got = append(got, m) })
	if err != nil || len(got) != 2 {
		t.Fatalf("%d requests (%v), want attempt 2's and the retry", len(got), err)
	}
	if m := got[1]; m.Headers().Get(jetstream.MsgIDHeader) != "contoso:x-1:3" ||
		string(m.Data()) != `{"attempt":3,"requestId":"x-1","machineId":"`+a+`","x":1}` {
		t.Errorf("retry: %s %v, want the latest body as attempt 3", m.Data(), m.Headers())
	}
	// --seq of the older dead letters: the same retry, reported a repeat.
	for _, seq := range []string{"1", "2"} {
		code, out, errOut := e.ctl(t.Context(), "dead", "retry", tenant, "--seq", seq)
		if code != exitOK || !strings.Contains(out, "x-1 attempt 3 was retried before (dead letter 3,") || !strings.Contains(out, "0 retried, 1 retried before") {
			t.Errorf("dead retry --seq %s: exit %d: %s %s", seq, code, out, errOut)
		}
	}
}

// A request failed, was retried and failed again, then its publisher sent
// attempt 1 anew: answered from the ledger, with a dead letter of its own,
// attempt 1, the latest. dead retry then makes attempt 3 (not 2, which the
// stream would drop as a repeat), which the worker works on.
func TestDeadRetryAfterTheRequestWasSentAnew(t *testing.T) {
	t.Parallel()
	e := newEnv(t, 0)
	e.startWorker()
	body := []byte(`{"requestId":"nf-1","machineId":"` + strings.Repeat("e", 40) + `"}`)
	send := func(msgID string) {
		t.Helper()
		m := nats.NewMsg(offboard.Subjects{}.Request(tenant, offboard.Normal))
		m.Data = body
		m.Header.Set(jetstream.MsgIDHeader, msgID)
		if _, err := e.js.PublishMsg(t.Context(), m); err != nil {
			t.Fatal(err)
		}
	}
	send("contoso:nf-1")
	e.waitFor("attempt 1's result", time.Minute, func() bool { return len(e.results()) == 1 })
	if code, out, errOut := e.ctl(t.Context(), "dead", "retry", tenant, "--all"); code != exitOK || !strings.Contains(out, "retried nf-1 attempt 2") {
		t.Fatalf("first retry: exit %d: %s %s", code, out, errOut)
	}
	e.waitFor("attempt 2's result", time.Minute, func() bool { return len(e.results()) == 2 })
	send("contoso:nf-1:sent-anew")
	e.waitFor("attempt 1 sent anew answered", time.Minute, func() bool { return e.requestsWaiting() == 0 })

	code, out, errOut := e.ctl(t.Context(), "dead", "ls", tenant, "--json")
	var ds []deadLetter
	if err := json.Unmarshal([]byte(out), &ds); code != exitOK || err != nil || len(ds) != 3 || ds[0].Attempt != 1 || ds[1].Attempt != 2 || ds[2].Attempt != 1 {
		t.Fatalf("dead ls: exit %d (%v): %s %s; want attempts 1, 2 and 1 (the request sent anew)", code, err, out, errOut)
	}
	if code, out, errOut := e.ctl(t.Context(), "dead", "retry", tenant, "--all"); code != exitOK || !strings.Contains(out, "retried nf-1 attempt 3") {
		t.Fatalf("second retry: exit %d: %s %s", code, out, errOut)
	}
	e.waitFor("attempt 3's result", time.Minute, func() bool { return len(e.results()) == 3 })
	if r := e.results()[2]; r.RequestID != "nf-1" || r.Attempt != 3 || r.Outcome != offboard.OutcomeFailed {
		t.Errorf("third result: %s attempt %d %s", r.RequestID, r.Attempt, r.Outcome)
	}
}

func TestWithAttempt(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]string{
		`{}`:                            `{"attempt":2}`,
		` { } `:                         ` {"attempt":2 } `,
		`{"requestId":"a"}`:             `{"attempt":2,"requestId":"a"}`,
		`{"requestId":"a","attempt":1}`: `{"requestId":"a","attempt":2}`,
		`{"x":{"attempt":7},"attempt" :  1 , "y":[1]}`: `{"x":{"attempt":7},"attempt" :  2 , "y":[1]}`,
	} {
		got, err := withAttempt([]byte(in), 2)
		if err != nil || string(got) != want {
			t.Errorf("%s: %s, %v; want %s", in, got, err, want)
		}
		if _, err := offboard.ParseRequest(got, tenant); err != nil && !strings.Contains(err.Error(), "required") && !strings.Contains(err.Error(), "missing") {
			t.Errorf("%s: %v", got, err)
		}
	}
	if _, err := withAttempt([]byte(`not json`), 2); err == nil {
		t.Error("not JSON: no error")
	}
	var v map[string]any
	got, _ := withAttempt([]byte(`{"requestId":"a"}`), 3)
	if err := json.Unmarshal(got, &v); err != nil || v["attempt"] != 3.0 {
		t.Errorf("%s", got)
	}
}

// cancelOnWrite cancels a context at the first line written that starts
// with prefix: an operator's Ctrl-C at that moment.
type cancelOnWrite struct {
	strings.Builder
	prefix string
	cancel func()
}

func (w *cancelOnWrite) Write(p []byte) (int, error) {
	if strings.HasPrefix(string(p), w.prefix) {
		w.cancel()
	}
	return w.Builder.Write(p)
}

// A dead retry --all interrupted stops there: one line says so, nothing
// is lost, and the same command retries the rest.
func TestDeadRetryInterrupted(t *testing.T) {
	t.Parallel()
	e := newEnv(t, 0)
	e.startWorker()
	const n = 20
	for i := range n {
		if _, err := offboard.Publish(t.Context(), e.js, offboard.Subjects{}, tenant, offboard.Normal,
			offboard.Request{RequestID: fmt.Sprintf("chg-%d", i), MachineID: randHex(20)}); err != nil {
			t.Fatal(err)
		}
	}
	e.waitFor("the results", time.Minute, func() bool { return len(e.results()) == n })
	e.waitFor("the requests answered", time.Minute, func() bool { return e.requestsWaiting() == 0 })
	e.stopWorker() // the retries wait in the stream

	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	out := &cancelOnWrite{prefix: "retried ", cancel: cancel}
	var errb strings.Builder
	code := runContext(ctx, []string{"--nats-url", e.url, "dead", "retry", tenant, "--all"}, out, &errb)
	retried := strings.Count(out.String(), "retried chg-")
	if code != exitFailed || !strings.Contains(errb.String(), "interrupted") || strings.Count(strings.TrimSpace(errb.String()), "\n") != 0 {
		t.Errorf("interrupted: exit %d, stderr %q", code, errb.String())
	}
	if retried == 0 || retried == n || e.requestsWaiting() != uint64(retried) {
		t.Errorf("%d retried, %d requests waiting: %s", retried, e.requestsWaiting(), out.String())
	}
	if code, out, errs := e.ctl(t.Context(), "dead", "retry", tenant, "--all"); code != exitOK ||
		!strings.Contains(out, fmt.Sprintf("%d retried, %d retried before", n-retried, retried)) {
		t.Errorf("again: exit %d: %s %s", code, out, errs)
	}
	if got := e.requestsWaiting(); got != n {
		t.Errorf("%d requests waiting, want %d", got, n)
	}
}

// dead ls and dead retry of a tenant no worker has set up (a typo) say so,
// exit 1, where they printed an empty list as if nothing had failed. A
// known tenant without dead letters lists none, exit 0; a tenant removed
// from the tenants files whose dead letters are still kept has them
// listed and retried. An empty list in JSON is an empty array.
func TestDeadOfAnUnknownTenant(t *testing.T) {
	t.Parallel()
	url, js := natsWithStreams(t)
	for _, args := range [][]string{
		{"dead", "ls", "contosso"}, {"dead", "ls", "contosso", "--json"}, {"dead", "ls", "contosso", "--code", offboard.CodeAPIError},
		{"dead", "retry", "contosso", "--all"}, {"dead", "retry", "contosso", "--seq", "1"},
	} {
		code, out, errs := ctl(t, url, args...)
		if code != exitFailed || out != "" || strings.Count(strings.TrimSpace(errs), "\n") != 0 ||
			!strings.Contains(errs, "tenant contosso: no worker has set up its consumers") || !strings.Contains(errs, "no dead letters") {
			t.Errorf("%q: exit %d, stdout %q, stderr %q", args, code, out, errs)
		}
	}
	if code, out, errs := ctl(t, url, "dead", "ls", "fabrikam"); code != exitOK || strings.TrimSpace(out) != "SEQ  TENANT  REQUEST ID  ATTEMPT  CODE  MESSAGE  AGE" {
		t.Errorf("dead ls of a known tenant without dead letters: exit %d, stdout %q, stderr %q", code, out, errs)
	}
	if code, out, errs := ctl(t, url, "dead", "ls", "fabrikam", "--json"); code != exitOK || strings.TrimSpace(out) != "[]" {
		t.Errorf("dead ls --json of a known tenant without dead letters: exit %d, stdout %q, stderr %q", code, out, errs)
	}
	if code, out, errs := ctl(t, url, "dead", "retry", "fabrikam", "--all"); code != exitOK || !strings.Contains(out, "0 retried, 0 retried before") {
		t.Errorf("dead retry of a known tenant without dead letters: exit %d, stdout %q, stderr %q", code, out, errs)
	}

	// northwind was removed from the tenants file (no consumers); its
	// dead letter is still there.
	m := nats.NewMsg(offboard.Subjects{}.Dead("northwind"))
	m.Data = []byte(`{"requestId":"nw-1","machineId":"` + strings.Repeat("a", 40) + `"}`)
	m.Header.Set(offboard.HeaderErrorCode, offboard.CodeAPIError)
	m.Header.Set(offboard.HeaderOriginalSubject, offboard.Subjects{}.Request("northwind", offboard.Normal))
	if _, err := js.PublishMsg(t.Context(), m); err != nil {
		t.Fatal(err)
	}
	if code, out, errs := ctl(t, url, "dead", "ls", "northwind"); code != exitOK || !strings.Contains(out, "nw-1") {
		t.Errorf("dead ls of a removed tenant's dead letters: exit %d, stdout %q, stderr %q", code, out, errs)
	}
	if code, out, errs := ctl(t, url, "dead", "ls", "northwind", "--code", offboard.CodeMachineNotFound); code != exitOK || strings.Contains(out, "nw-1") {
		t.Errorf("dead ls --code of a removed tenant's dead letters: exit %d, stdout %q, stderr %q", code, out, errs)
	}
	if code, out, errs := ctl(t, url, "dead", "retry", "northwind", "--all"); code != exitOK || !strings.Contains(out, "retried nw-1 attempt 2") {
		t.Errorf("dead retry of a removed tenant's dead letters: exit %d, stdout %q, stderr %q", code, out, errs)
	}
}

// The dead letters of requests on a subject whose tenant is no tenant name
// are kept under _unknown: dead ls lists them by that name (none is no
// error: no worker sets up _unknown); dead retry refuses it, since their
// retries would only be refused again.
func TestDeadOfSubjectsWithoutATenant(t *testing.T) {
	t.Parallel()
	url, js := natsWithStreams(t)
	if code, out, errs := ctl(t, url, "dead", "ls", "_unknown"); code != exitOK || strings.TrimSpace(out) != "SEQ  TENANT  REQUEST ID  ATTEMPT  CODE  MESSAGE  AGE" {
		t.Errorf("dead ls _unknown, none: exit %d, stdout %q, stderr %q", code, out, errs)
	}
	m := nats.NewMsg(offboard.Subjects{}.Dead("_unknown"))
	m.Data = []byte(`{"requestId":"up-1","machineId":"` + strings.Repeat("a", 40) + `"}`)
	m.Header.Set(offboard.HeaderErrorCode, offboard.CodeUnknownTenant)
	m.Header.Set(offboard.HeaderOriginalSubject, "mde.offboard.request.Contoso")
	if _, err := js.PublishMsg(t.Context(), m); err != nil {
		t.Fatal(err)
	}
	if code, out, errs := ctl(t, url, "dead", "ls", "_unknown", "--code", offboard.CodeUnknownTenant); code != exitOK || !strings.Contains(out, "up-1") {
		t.Errorf("dead ls _unknown: exit %d, stdout %q, stderr %q", code, out, errs)
	}
	if code, _, errs := ctl(t, url, "dead", "retry", "_unknown", "--all"); code != exitUsage || !strings.Contains(errs, "cannot be retried") {
		t.Errorf("dead retry _unknown: exit %d, stderr %q", code, errs)
	}
}

// A dead letter at the largest attempt there is cannot be retried under
// its request id: one more would wrap around to a negative attempt. It
// is refused, one line, exit 1, and nothing is published for it; the
// other dead letters are retried.
func TestDeadRetryAtTheLargestAttempt(t *testing.T) {
	t.Parallel()
	url, js := natsWithStreams(t)
	a := strings.Repeat("a", 40)
	publishDead(t, js, offboard.CodeMachineNotFound,
		fmt.Sprintf(`{"requestId":"x-1","machineId":"%s","attempt":%d}`, a, math.MaxInt), // 1
		`{"requestId":"y-1","machineId":"`+a+`"}`,                                        // 2
	)
	requests := func() []string {
		t.Helper()
		var got []string
		err := scan(t.Context(), js, offboard.StreamRequests, offboard.Subjects{}.Request("contoso", offboard.Normal), func(m jetstream.Msg) {
			got = append(got, string(m.Data()))
		})
		if err != nil {
			t.Fatal(err)
		}
		return got
	}
	code, out, errs := ctl(t, url, "dead", "retry", "contoso", "--all")
	if code != exitFailed || strings.Count(strings.TrimSpace(errs), "\n") != 0 ||
		!strings.Contains(errs, fmt.Sprintf("dead letter 1: x-1 is at attempt %d", math.MaxInt)) ||
		!strings.Contains(out, "retried y-1 attempt 2") || !strings.Contains(out, "1 retried, 0 retried before (the stream dropped the repeat), 1 not retried") {
		t.Errorf("dead retry --all: exit %d, stdout %q, stderr %q", code, out, errs)
	}
	if got := requests(); len(got) != 1 || !strings.Contains(got[0], `"y-1"`) {
		t.Errorf("requests published: %q, want y-1's retry only", got)
	}
	code, out, errs = ctl(t, url, "dead", "retry", "contoso", "--seq", "1")
	if code != exitFailed || !strings.Contains(errs, "x-1 is at attempt") || !strings.Contains(out, "0 retried, 0 retried before (the stream dropped the repeat), 1 not retried") {
		t.Errorf("dead retry --seq 1: exit %d, stdout %q, stderr %q", code, out, errs)
	}
	if got := requests(); len(got) != 1 {
		t.Errorf("requests published: %q, want y-1's retry only", got)
	}
}

// dead ls --json interrupted closes the array it started: what was listed
// reads as JSON, and the exit status says the list is not whole.
func TestDeadListInterruptedIsStillJSON(t *testing.T) {
	t.Parallel()
	e := newEnv(t, 0)
	e.startWorker() // sets up the streams
	e.stopWorker()
	for i := range 3 {
		m := nats.NewMsg(offboard.Subjects{}.Dead(tenant))
		m.Data = fmt.Appendf(nil, `{"requestId":"chg-%d","machineId":"%s"}`, i, strings.Repeat("e", 40))
		m.Header.Set(offboard.HeaderErrorCode, offboard.CodeMachineNotFound)
		if _, err := e.js.PublishMsg(t.Context(), m); err != nil {
			t.Fatal(err)
		}
	}
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	out := &cancelOnWrite{prefix: "[", cancel: cancel}
	var errb strings.Builder
	code := runContext(ctx, []string{"--nats-url", e.url, "dead", "ls", tenant, "--json"}, out, &errb)
	var ds []deadLetter
	if err := json.Unmarshal([]byte(out.String()), &ds); code != exitFailed || err != nil || len(ds) == 0 ||
		!strings.HasPrefix(errb.String(), "offboardctl: interrupted: the list is not whole") {
		t.Errorf("exit %d, %d listed (%v): %s; stderr %q", code, len(ds), err, out.String(), errb.String())
	}
}

// A dead letter's request id is the publisher's, unchecked when the
// request failed its checks for it: dead ls shows it escaped, so that a
// newline or a terminal escape in it forges no line, and dead retry
// refuses it (the worker would refuse the retry again) and publishes
// nothing for it.
func TestDeadLetterWithAnInvalidRequestID(t *testing.T) {
	t.Parallel()
	url, js := natsWithStreams(t)
	a := strings.Repeat("a", 40)
	evil := "x-1\n99  contoso  forged  1  api_error  \x1b[2J"
	body, err := json.Marshal(map[string]string{"requestId": evil, "machineId": a})
	if err != nil {
		t.Fatal(err)
	}
	publishDead(t, js, offboard.CodeInvalidRequest, string(body))
	code, out, errs := ctl(t, url, "dead", "ls", "contoso")
	if code != exitOK || strings.Count(out, "\n") != 2 || strings.Contains(out, "\x1b") || !strings.Contains(out, offboard.Quote(evil)) {
		t.Errorf("dead ls: exit %d, stdout %q, stderr %q; want the header and one line, the id escaped", code, out, errs)
	}
	code, out, errs = ctl(t, url, "dead", "retry", "contoso", "--all")
	if code != exitFailed || strings.Count(strings.TrimSpace(errs), "\n") != 0 || strings.Contains(out+errs, "\x1b") ||
		!strings.Contains(errs, "is not one") || !strings.Contains(out, "0 retried, 0 retried before (the stream dropped the repeat), 1 not retried") {
		t.Errorf("dead retry --all: exit %d, stdout %q, stderr %q", code, out, errs)
	}
	err = scan(t.Context(), js, offboard.StreamRequests, offboard.Subjects{}.Request("contoso", offboard.Normal), func(m jetstream.Msg) {
		t.Errorf("published: %q", m.Data())
	})
	if err != nil {
		t.Fatal(err)
	}
}

// A dead letter's message, text of an API or proxy answer, is shown in
// the table with its terminal escapes and tabs escaped: they would redraw
// the screen or shift the columns. So is its error code, a header anyone
// who may publish dead letters can write.
func TestDeadListEscapesTheMessage(t *testing.T) {
	t.Parallel()
	url, js := natsWithStreams(t)
	m := nats.NewMsg(offboard.Subjects{}.Dead("contoso"))
	m.Data = []byte(`{"requestId":"esc-1","machineId":"` + strings.Repeat("a", 40) + `"}`)
	m.Header.Set(offboard.HeaderErrorCode, "api_error\x1b[1A")
	m.Header.Set(offboard.HeaderErrorMessage, "HTTP 502: \x1b[2J\x1b[Hall clear\tcreated ✓")
	if _, err := js.PublishMsg(t.Context(), m); err != nil {
		t.Fatal(err)
	}
	code, out, errs := ctl(t, url, "dead", "ls", "contoso")
	if code != exitOK || strings.ContainsAny(out, "\x1b\t") || !strings.Contains(out, `HTTP 502: \x1b[2J\x1b[Hall clear\tcreated ✓`) || !strings.Contains(out, `api_error\x1b[1A`) {
		t.Errorf("exit %d, stdout %q, stderr %q", code, out, errs)
	}
}

// A dead letter whose body fails the request's checks is not retried: its
// retry would fail them again, or, when only its attempt was wrong, pass
// them with the attempt dead retry writes and reach the API with bad
// input. Nor is it taken for the latest dead letter of the request id it
// names: a malformed copy of a failed request would be retried in its
// place, fail again, and keep the request itself from ever being retried.
func TestDeadRetryOfABodyThatFailsItsChecks(t *testing.T) {
	t.Parallel()
	e := newEnv(t, 1)
	e.startWorker()
	late := mdesim.Machine{ID: randHex(20), ComputerDNSName: "late.contoso.local", OSPlatform: "Windows11"}
	send := func(msgID, body string) {
		t.Helper()
		m := nats.NewMsg(offboard.Subjects{}.Request(tenant, offboard.Normal))
		m.Data = []byte(body)
		m.Header.Set(jetstream.MsgIDHeader, msgID)
		if _, err := e.js.PublishMsg(t.Context(), m); err != nil {
			t.Fatal(err)
		}
	}
	send("contoso:chg-1", `{"requestId":"chg-1","machineId":"`+late.ID+`"}`) // not there yet
	e.waitFor("chg-1's result", time.Minute, func() bool { return len(e.results()) == 1 })
	// A malformed copy of chg-1, then bad input that names a device.
	send("contoso:chg-1:copy", `{"requestId":"chg-1","machineId":"`+late.ID+`","tenant":"fabrikam"}`)
	send("contoso:bad-1", `{"requestId":"bad-1","machineId":"`+e.machines[0].ID+`","attempt":0}`)
	e.waitFor("the bad requests' results", time.Minute, func() bool { return len(e.results()) == 3 })
	e.sim.AddMachine(e.tenantID, late)

	code, out, errOut := e.ctl(t.Context(), "dead", "retry", tenant, "--all")
	if code != exitFailed || !strings.Contains(out, "retried chg-1 attempt 2 (dead letter 1,") ||
		!strings.Contains(out, "1 retried, 0 retried before (the stream dropped the repeat), 2 not retried") ||
		strings.Count(out, "its body fails the request's checks") != 2 || strings.Count(strings.TrimSpace(errOut), "\n") != 0 {
		t.Errorf("dead retry --all: exit %d: %s %s", code, out, errOut)
	}
	e.waitFor("the retries answered", time.Minute, func() bool { return len(e.results()) >= 4 && e.requestsWaiting() == 0 })
	for _, r := range e.results()[3:] {
		if r.RequestID != "chg-1" || r.Attempt != 2 || r.Outcome != offboard.OutcomeCreated {
			t.Errorf("a retry's result: %s attempt %d %s", r.RequestID, r.Attempt, r.Outcome)
		}
	}
	// bad-1's own dead letter, by its sequence: refused all the same.
	_, out, _ = e.ctl(t.Context(), "dead", "ls", tenant, "--json")
	var ds []deadLetter
	if err := json.Unmarshal([]byte(out), &ds); err != nil {
		t.Fatal(err)
	}
	for _, d := range ds {
		if d.RequestID != "bad-1" {
			continue
		}
		code, out, errOut := e.ctl(t.Context(), "dead", "retry", tenant, "--seq", fmt.Sprint(d.Seq))
		if code != exitFailed || !strings.Contains(out, "0 retried") || !strings.Contains(errOut, "its body fails the request's checks") {
			t.Errorf("dead retry --seq %d: exit %d: %s %s", d.Seq, code, out, errOut)
		}
	}
	if got := e.requestsWaiting(); got != 0 {
		t.Errorf("%d requests waiting", got)
	}
	for _, a := range e.sim.Actions(e.tenantID) {
		if a.MachineID != late.ID {
			t.Errorf("action for %s: bad input reached the API", a.MachineID)
		}
	}
}

// A dead letter whose request id was answered since (its retry created an
// action) is not retried again once the duplicate window has passed and
// the stream no longer drops the repeat: the repeat would be answered from
// the ledger, its result sent a second time, or, once the ledger has
// forgotten the id, make a second offboard call for the device. Here no
// request was ever stored, as after the window.
func TestDeadRetryOfARequestAnsweredSince(t *testing.T) {
	t.Parallel()
	url, js := natsWithStreams(t)
	a, b := strings.Repeat("a", 40), strings.Repeat("b", 40)
	publishDead(t, js, offboard.CodeMachineNotFound,
		`{"requestId":"x-1","machineId":"`+a+`"}`, // 1
		`{"requestId":"y-1","machineId":"`+b+`"}`, // 2
	)
	// x-1's retry, attempt 2, created an action.
	res, err := (&offboard.Result{RequestID: "x-1", Tenant: "contoso", MachineID: a, Outcome: offboard.OutcomeCreated, Attempt: 2}).Marshal()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := js.Publish(t.Context(), offboard.Subjects{}.Result("contoso"), res, jetstream.WithMsgID(offboard.ResultMsgID("contoso", "x-1", 2))); err != nil {
		t.Fatal(err)
	}
	requests := func() []string {
		t.Helper()
		var got []string
		err := scan(t.Context(), js, offboard.StreamRequests, offboard.Subjects{}.Request("contoso", offboard.Normal), func(m jetstream.Msg) {
			got = append(got, m.Headers().Get(jetstream.MsgIDHeader))
		})
		if err != nil {
			t.Fatal(err)
		}
		return got
	}

	code, out, errs := ctl(t, url, "dead", "retry", "contoso", "--all")
	if code != exitOK || !strings.Contains(out, "x-1 was answered since its dead letter 1: created, attempt 2; not retried") ||
		!strings.Contains(out, "retried y-1 attempt 2") || !strings.Contains(out, "1 retried, 0 retried before (the stream dropped the repeat), 0 not retried, 1 answered since") {
		t.Errorf("dead retry --all: exit %d, stdout %q, stderr %q", code, out, errs)
	}
	if code, out, errs := ctl(t, url, "dead", "retry", "contoso", "--seq", "1"); code != exitOK || !strings.Contains(out, "0 retried, 0 retried before (the stream dropped the repeat), 0 not retried, 1 answered since") {
		t.Errorf("dead retry --seq 1: exit %d, stdout %q, stderr %q", code, out, errs)
	}
	if got := requests(); len(got) != 1 || got[0] != "contoso:y-1:2" {
		t.Errorf("requests published: %q, want y-1's retry only", got)
	}
}

// publishDead publishes a dead letter of tenant contoso's normal requests
// for each body, with the error code given.
func publishDead(t testing.TB, js jetstream.JetStream, code string, bodies ...string) {
	t.Helper()
	for _, body := range bodies {
		m := nats.NewMsg(offboard.Subjects{}.Dead("contoso"))
		m.Data = []byte(body)
		m.Header.Set(offboard.HeaderErrorCode, code)
		m.Header.Set(offboard.HeaderOriginalSubject, offboard.Subjects{}.Request("contoso", offboard.Normal))
		if _, err := js.PublishMsg(t.Context(), m); err != nil {
			t.Fatal(err)
		}
	}
}

// TestDeadRetrySeveralNotRetried: dead retry --all with several dead
// letters that cannot be retried says why of each on its own line among
// the others (stdout) and ends with one line on stderr, exit 1; those
// that can are retried.
func TestDeadRetrySeveralNotRetried(t *testing.T) {
	t.Parallel()
	url, js := natsWithStreams(t)
	a := strings.Repeat("a", 40)
	publishDead(t, js, offboard.CodeMachineNotFound,
		`{"machineId":"`+a+`"}`,                      // 1: no request id
		`{"requestId":"y-1","machineId":"`+a+`"}`,    // 2
		`{"requestId":"bad id","machineId":"`+a+`"}`, // 3: not a request id
	)
	code, out, errs := ctl(t, url, "dead", "retry", "contoso", "--all")
	if code != exitFailed || strings.Count(strings.TrimSpace(errs), "\n") != 0 || !strings.Contains(errs, "2 dead letters not retried") ||
		!strings.Contains(out, "dead letter 1: its body has no request id") || !strings.Contains(out, "dead letter 3: its request id") ||
		!strings.Contains(out, "retried y-1 attempt 2") || !strings.Contains(out, "1 retried, 0 retried before (the stream dropped the repeat), 2 not retried") {
		t.Errorf("dead retry --all: exit %d, stdout %q, stderr %q", code, out, errs)
	}
}

// dead retry shows a dead letter's error code escaped too, in the line of
// each retry and in the error of a --seq whose request failed again
// since: a header anyone who may publish dead letters can write.
func TestDeadRetryEscapesTheCode(t *testing.T) {
	t.Parallel()
	url, js := natsWithStreams(t)
	a := strings.Repeat("a", 40)
	publishDead(t, js, "api_error\x1b[1A", `{"requestId":"esc-1","machineId":"`+a+`"}`)             // 1
	publishDead(t, js, offboard.CodeAPIError, `{"requestId":"esc-2","machineId":"`+a+`"}`)          // 2
	publishDead(t, js, "cancelled\x1b[2J", `{"requestId":"esc-2","machineId":"`+a+`","attempt":2}`) // 3
	for range 2 {                                                                                   // retried, then retried before
		code, out, errs := ctl(t, url, "dead", "retry", "contoso", "--all")
		if code != exitOK || strings.Contains(out+errs, "\x1b") || !strings.Contains(out, `(dead letter 1, api_error\x1b[1A)`) || !strings.Contains(out, `(dead letter 3, cancelled\x1b[2J)`) {
			t.Errorf("dead retry --all: exit %d, stdout %q, stderr %q", code, out, errs)
		}
	}
	code, out, errs := ctl(t, url, "dead", "retry", "contoso", "--seq", "2", "--code", offboard.CodeAPIError)
	if code != exitFailed || strings.Contains(out+errs, "\x1b") || !strings.Contains(errs, `with code cancelled\x1b[2J, not api_error`) {
		t.Errorf("dead retry --seq 2: exit %d, stdout %q, stderr %q", code, out, errs)
	}
}

// dead ls --json writes the characters a terminal may act on that JSON
// leaves as they are (C1 controls such as U+009B, which some terminals
// take for an escape's start, and bidirectional overrides) as \u escapes,
// as it does the others: the same values, read as JSON.
func TestDeadListJSONEscapesWhatATerminalActsOn(t *testing.T) {
	t.Parallel()
	url, js := natsWithStreams(t)
	m := nats.NewMsg(offboard.Subjects{}.Dead("contoso"))
	m.Data = []byte(`{"requestId":"x\u009b2J","machineId":"` + strings.Repeat("a", 40) + `"}`)
	m.Header.Set(offboard.HeaderErrorCode, offboard.CodeAPIError)
	m.Header.Set(offboard.HeaderErrorMessage, "HTTP 502: \u009b2J\u202etxt.exe ✓ \U0001F600")
	if _, err := js.PublishMsg(t.Context(), m); err != nil {
		t.Fatal(err)
	}
	code, out, errs := ctl(t, url, "dead", "ls", "contoso", "--json")
	var ds []deadLetter
	if err := json.Unmarshal([]byte(out), &ds); code != exitOK || err != nil || len(ds) != 1 {
		t.Fatalf("exit %d, stdout %q, stderr %q (%v)", code, out, errs, err)
	}
	if strings.ContainsAny(out, "\u009b\u202e") || !strings.Contains(out, `\u009b2J`) || !strings.Contains(out, "✓ \U0001F600") {
		t.Errorf("stdout %q", out)
	}
	if ds[0].RequestID != "x\u009b2J" || ds[0].Message != "HTTP 502: \u009b2J\u202etxt.exe ✓ \U0001F600" {
		t.Errorf("read back: %q, %q", ds[0].RequestID, ds[0].Message)
	}
}

// publishBulkDead publishes a dead letter by hand: body, its failure
// code, and the tenant's bulk subject as its original.
func (e *testEnv) publishBulkDead(t *testing.T, body, code string) {
	t.Helper()
	m := nats.NewMsg(offboard.Subjects{}.Dead(tenant))
	m.Data = []byte(body)
	m.Header.Set(offboard.HeaderErrorCode, code)
	m.Header.Set(offboard.HeaderOriginalSubject, offboard.Subjects{}.Request(tenant, offboard.Bulk))
	if _, err := e.js.PublishMsg(t.Context(), m); err != nil {
		t.Fatal(err)
	}
}
