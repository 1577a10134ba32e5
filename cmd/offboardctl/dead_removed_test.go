package main

import (
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/contoso-secops/mde-offboard/internal/queue"
	"github.com/contoso-secops/mde-offboard/internal/queue/natstest"
	"github.com/contoso-secops/mde-offboard/offboard"
)

// A request id whose latest dead letter was removed from
// MDE_OFFBOARD_DEAD (by hand, say) still has the result of that attempt:
// its retry is one more than that result's attempt too. As one more than
// the dead letters' highest, attempt 2 here, it was dropped as a repeat
// within the duplicate window, and after it answered from the ledger with
// the stored failure, no call made, and a second result for attempt 2.
// Here no request was ever stored, as after the window.
func TestDeadRetryAfterItsLatestDeadLetterWasRemoved(t *testing.T) {
	t.Parallel()
	url, js := natsWithStreams(t)
	a, b := strings.Repeat("a", 40), strings.Repeat("b", 40)
	publishDead(t, js, offboard.CodeMachineNotFound,
		`{"requestId":"x-1","machineId":"`+a+`"}`, // 1
		`{"requestId":"y-1","machineId":"`+b+`"}`, // 2
	)
	// x-1's retry, attempt 2, failed again; its dead letter is gone.
	res, err := (&offboard.Result{RequestID: "x-1", Tenant: "contoso", MachineID: a, Outcome: offboard.OutcomeFailed,
		Error: offboard.Failed(offboard.CodeMachineNotFound, "no such device"), Attempt: 2}).Marshal()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := js.Publish(t.Context(), offboard.Subjects{}.Result("contoso"), res, jetstream.WithMsgID(offboard.ResultMsgID("contoso", "x-1", 2))); err != nil {
		t.Fatal(err)
	}

	code, out, errs := ctl(t, url, "dead", "retry", "contoso", "--seq", "1")
	if code != exitOK || !strings.Contains(out, "retried x-1 attempt 3 (dead letter 1,") {
		t.Errorf("dead retry --seq 1: exit %d, stdout %q, stderr %q", code, out, errs)
	}
	code, out, errs = ctl(t, url, "dead", "retry", "contoso", "--all")
	if code != exitOK || !strings.Contains(out, "x-1 attempt 3 was retried before") || !strings.Contains(out, "retried y-1 attempt 2") {
		t.Errorf("dead retry --all: exit %d, stdout %q, stderr %q", code, out, errs)
	}
	var got []string
	err = scan(t.Context(), js, offboard.StreamRequests, offboard.Subjects{}.Request("contoso", offboard.Normal), func(m jetstream.Msg) {
		got = append(got, m.Headers().Get(jetstream.MsgIDHeader))
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || got[0] != "contoso:x-1:3" || got[1] != "contoso:y-1:2" {
		t.Errorf("requests published: %q, want x-1's attempt 3 and y-1's attempt 2", got)
	}
}

// A dead letter older than the results kept (--results-max-age) and than
// the ledger's entries (--ledger-ttl) is not retried: a retry of it that
// created an action may have left neither, and its retry would then be
// taken for a new request, a second offboard call for the device. One
// stored since is retried.
func TestDeadRetryOfADeadLetterOlderThanItsAnswersKept(t *testing.T) {
	t.Parallel()
	nc, js := natstest.Connect(t)
	s := queue.Settings{Tenants: []string{"contoso"}, Duplicates: 500 * time.Millisecond, ResultsMaxAge: 500 * time.Millisecond, LedgerTTL: 500 * time.Millisecond}
	if _, err := queue.Ensure(t.Context(), js, s); err != nil {
		t.Fatal(err)
	}
	a := strings.Repeat("a", 40)
	publishDead(t, js, offboard.CodeMachineNotFound, `{"requestId":"x-1","machineId":"`+a+`"}`) // 1
	time.Sleep(time.Second)                                                                     // dead letter 1 outlives its answers
	publishDead(t, js, offboard.CodeMachineNotFound, `{"requestId":"y-1","machineId":"`+a+`"}`) // 2

	code, out, errs := ctl(t, nc.ConnectedUrl(), "dead", "retry", "contoso", "--all")
	if code != exitFailed || !strings.Contains(out, "old, older than the answers the worker keeps (results 1s, ledger entries 1s): whether x-1 was answered since cannot be told") || !strings.Contains(out, "retried y-1 attempt 2") ||
		!strings.Contains(out, "1 retried, 0 retried before (the stream dropped the repeat), 1 not retried") {
		t.Errorf("dead retry --all: exit %d, stdout %q, stderr %q", code, out, errs)
	}
	var got []string
	err := scan(t.Context(), js, offboard.StreamRequests, offboard.Subjects{}.Request("contoso", offboard.Normal), func(m jetstream.Msg) {
		got = append(got, m.Headers().Get(jetstream.MsgIDHeader))
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 || got[0] != "contoso:y-1:2" {
		t.Errorf("requests published: %q, want y-1's retry only", got)
	}
}
