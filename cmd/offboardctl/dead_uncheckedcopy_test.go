package main

import (
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/contoso-secops/mde-offboard/offboard"
)

// A request answered failed after offboard calls, retried and answered
// failed again before any call (its ledger entry keeps the earlier
// calls), its first dead letter gone; then a copy of it whose body fails
// the request's checks, answered invalid_request under its request id and
// attempt 1 with a message id of its place in the stream, no ledger entry
// written. dead retry took that copy's result for the first attempt's,
// did not read the results again from the first, and retried the request
// once the ledger had forgotten the id: taken for a new request, its call
// could make a second action for the device. Not parallel: it sets
// resultsMargin.
func TestDeadRetryOfACalledRequestWithAnUncheckedCopy(t *testing.T) {
	const ttl = time.Second
	nc, js := withLedgerTTL(t, ttl)

	calledThenRetriedWithoutCalls(t, js)
	// 3: the copy that fails the request's checks, and its answer.
	res, err := (&offboard.Result{RequestID: "lost-1", Tenant: "contoso", Outcome: offboard.OutcomeFailed, Attempt: 1,
		Error: &offboard.ResultError{Code: offboard.CodeInvalidRequest, Message: "machineId is not a machine id"}, CompletedAt: time.Now().UTC()}).Marshal()
	if err != nil {
		t.Fatal(err)
	}
	msgID := offboard.SeqResultMsgID("contoso", offboard.Seq{N: 3})
	if _, err := js.Publish(t.Context(), offboard.Subjects{}.Result("contoso"), res, jetstream.WithMsgID(msgID)); err != nil {
		t.Fatal(err)
	}
	publishDead(t, js, offboard.CodeInvalidRequest, `{"requestId":"lost-1","machineId":"not-a-machine-id"}`)
	s, err := js.Stream(t.Context(), offboard.StreamDead)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.DeleteMsg(t.Context(), 1); err != nil { // the first failure's dead letter
		t.Fatal(err)
	}
	time.Sleep(ttl + 100*time.Millisecond) // the ledger forgets the retry's entry

	code, out, errs := ctl(t, nc.ConnectedUrl(), "dead", "retry", "contoso", "--seq", "2")
	if code != exitFailed || strings.Contains(out, "retried lost-1") || !strings.Contains(errs, "lost-1 was answered failed after offboard calls ") {
		t.Errorf("dead retry --seq 2: exit %d, stdout %q, stderr %q", code, out, errs)
	}
}
