package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/contoso-secops/mde-offboard/internal/queue"
	"github.com/contoso-secops/mde-offboard/internal/queue/natstest"
	"github.com/contoso-secops/mde-offboard/offboard"
)

// publishResults stores a created result of tenant contoso for each
// request id, at attempt 2, waiting for every ack.
func publishResults(t testing.TB, js jetstream.JetStream, ids ...string) {
	t.Helper()
	publishResultsWith(t, js, nil, ids...)
}

// publishResultsWith is publishResults with the machine action given.
func publishResultsWith(t testing.TB, js jetstream.JetStream, action json.RawMessage, ids ...string) {
	t.Helper()
	var acks []jetstream.PubAckFuture
	for _, id := range ids {
		res, err := (&offboard.Result{RequestID: id, Tenant: "contoso", MachineID: strings.Repeat("c", 40), Outcome: offboard.OutcomeCreated, MachineAction: action, Attempt: 2}).Marshal()
		if err != nil {
			t.Fatal(err)
		}
		f, err := js.PublishAsync(offboard.Subjects{}.Result("contoso"), res, jetstream.WithMsgID(offboard.ResultMsgID("contoso", id, 2)))
		if err != nil {
			t.Fatal(err)
		}
		acks = append(acks, f)
	}
	for _, f := range acks {
		select {
		case <-f.Ok():
		case err := <-f.Err():
			t.Fatal(err)
		case <-time.After(30 * time.Second):
			t.Fatal("no ack for a result")
		}
	}
}

// dead retry reads only the results stored since the oldest dead letter
// it picked (less resultsMargin): a tenant's results are kept forever by
// default, and a year of them would be read on every retry. A result
// stored before its request's dead letter still does not count as
// answered since, read or not; one stored after it does. Not parallel: it
// sets resultsMargin and reads answeredSinceRead.
func TestDeadRetryReadsTheResultsSinceTheOldestDeadLetter(t *testing.T) {
	url, js := natsWithStreams(t)
	saved := resultsMargin
	resultsMargin = 20 * time.Millisecond
	t.Cleanup(func() { resultsMargin = saved })

	var old []string
	for i := range 300 {
		old = append(old, fmt.Sprintf("old-%d", i))
	}
	publishResults(t, js, append(old, "x-1")...) // x-1 answered before its dead letter
	time.Sleep(100 * time.Millisecond)           // well past resultsMargin
	a := strings.Repeat("a", 40)
	publishDead(t, js, offboard.CodeMachineNotFound, `{"requestId":"x-1","machineId":"`+a+`"}`) // 1
	publishResults(t, js, "w-1")                                                                // read: after dead letter 1, before w-1's; its attempt 2 was sent
	publishDead(t, js, offboard.CodeMachineNotFound, `{"requestId":"w-1","machineId":"`+a+`"}`) // 2
	time.Sleep(100 * time.Millisecond)
	publishDead(t, js, offboard.CodeMachineNotFound, `{"requestId":"y-1","machineId":"`+a+`"}`) // 3
	publishResults(t, js, "y-1", "new-1", "new-2")                                              // y-1 answered since

	answeredSinceRead.Store(0)
	code, out, errs := ctl(t, url, "dead", "retry", "contoso", "--all")
	if code != exitOK || !strings.Contains(out, "retried x-1 attempt 2") || !strings.Contains(out, "retried w-1 attempt 3") ||
		!strings.Contains(out, "y-1 was answered since its dead letter 3: created, attempt 2; not retried") ||
		!strings.Contains(out, "2 retried, 0 retried before (the stream dropped the repeat), 0 not retried, 1 answered since") {
		t.Errorf("dead retry --all: exit %d, stdout %q, stderr %q", code, out, errs)
	}
	if n := answeredSinceRead.Load(); n != 4 {
		t.Errorf("dead retry --all read %d results, want the 4 stored since its oldest dead letter", n)
	}

	// --seq of the latest: from its dead letter on.
	answeredSinceRead.Store(0)
	if code, out, errs := ctl(t, url, "dead", "retry", "contoso", "--seq", "3"); code != exitOK || !strings.Contains(out, "1 answered since") {
		t.Errorf("dead retry --seq 3: exit %d, stdout %q, stderr %q", code, out, errs)
	}
	if n := answeredSinceRead.Load(); n != 3 {
		t.Errorf("dead retry --seq 3 read %d results, want the 3 stored since its dead letter", n)
	}
}

// BenchmarkDeadRetrySeqOverAYearOfResults: dead retry --seq N of a tenant
// whose results stream holds 200,000 results of ~1.1 KiB, all stored
// before the dead letter (results are kept forever by default). Run with
// go test -run '^$' -bench DeadRetrySeqOverAYear -benchmem ./cmd/offboardctl/
// (setting up the stream takes a while). The results here are stored
// seconds before the dead letter, not months: resultsMargin is cut to
// match.
func BenchmarkDeadRetrySeqOverAYearOfResults(b *testing.B) {
	saved := resultsMargin
	resultsMargin = 20 * time.Millisecond
	b.Cleanup(func() { resultsMargin = saved })
	nc, js := natstest.Connect(b)
	if _, err := queue.Ensure(b.Context(), js, queue.Settings{Tenants: []string{"contoso"}}); err != nil {
		b.Fatal(err)
	}
	action := json.RawMessage(`{"id":"` + strings.Repeat("d", 36) + `","type":"Offboard","comment":"` + strings.Repeat("x", 700) + `"}`)
	for start := 0; start < 200_000; start += 2_000 {
		ids := make([]string, 2_000)
		for i := range ids {
			ids[i] = fmt.Sprintf("old-%d", start+i)
		}
		publishResultsWith(b, js, action, ids...)
	}
	time.Sleep(50 * time.Millisecond)
	a := strings.Repeat("a", 40)
	publishDead(b, js, offboard.CodeMachineNotFound, `{"requestId":"x-1","machineId":"`+a+`"}`)
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		var out, errb bytes.Buffer
		if code := run([]string{"--nats-url", nc.ConnectedUrl(), "dead", "retry", "contoso", "--seq", "1"}, &out, &errb); code != exitOK {
			b.Fatalf("dead retry --seq 1: exit %d: %s %s", code, out.String(), errb.String())
		}
	}
}
