package main

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/contoso-secops/mde-offboard/internal/mde/mdesim"
	"github.com/contoso-secops/mde-offboard/internal/queue"
	"github.com/contoso-secops/mde-offboard/internal/queue/natstest"
	"github.com/contoso-secops/mde-offboard/offboard"
)

// TestDeadRetryOfACalledRequestTheLedgerForgot: a request whose call's
// answer was lost, and whose action lists showed only after the worker's
// looks, is answered failed while its action exists; the device takes
// the action and it finishes. A retry looks for that action before it
// calls, from the calls its request id's ledger entry keeps. Once the
// ledger has forgotten the id (--ledger-ttl, 30 days; results and dead
// letters are kept for ever), the retry was taken for a new request and
// its call, which the API takes, made a second action for the device.
// Such a dead letter is now refused, as one older than every answer kept;
// one of a request answered failed before any call is retried as before.
func TestDeadRetryOfACalledRequestTheLedgerForgot(t *testing.T) {
	t.Parallel()
	const hidden = 2 * time.Second
	e := newEnvSim(t, 1, "5000/1m", mdesim.Options{ActionVisibleAfter: hidden, ActionCompleteAfter: hidden})
	e.opts.Queue.LedgerTTL = 3 * time.Second
	// The call looks for its action for as long as a new one may take to
	// show: shorter here than the action is hidden, so that it ends
	// failed.
	e.opts.ActionShowsWithin = time.Second
	e.startWorker()
	e.sim.LoseAnswers(e.tenantID, 1)
	r := offboard.Request{RequestID: "lost-1", MachineID: e.machines[0].ID}
	if _, err := offboard.Publish(t.Context(), e.js, offboard.Subjects{}, tenant, offboard.Normal, r); err != nil {
		t.Fatal(err)
	}
	e.waitFor("the request's result", time.Minute, func() bool { return len(e.results()) == 1 })
	if got := e.results()[0]; got.Outcome != offboard.OutcomeFailed || got.Attempts == 0 {
		t.Fatalf("first attempt: %s after %d calls; want failed after a call", got.Outcome, got.Attempts)
	}
	// No device has this name: failed before any offboard call.
	r = offboard.Request{RequestID: "name-1", ComputerDNSName: "gone.contoso.local"}
	if _, err := offboard.Publish(t.Context(), e.js, offboard.Subjects{}, tenant, offboard.Normal, r); err != nil {
		t.Fatal(err)
	}
	e.waitFor("the second request's result", time.Minute, func() bool { return len(e.results()) == 2 })
	if got := e.results()[1]; got.Outcome != offboard.OutcomeFailed || got.Attempts != 0 {
		t.Fatalf("second request: %s after %d calls; want failed before any call", got.Outcome, got.Attempts)
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		a := e.sim.Actions(e.tenantID)
		if len(a) == 1 && a[0].Status == "Succeeded" && e.stored("KV_"+offboard.BucketLedger) == 0 {
			break // the action finished, and the ledger forgot the id
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d actions, %d ledger entries", len(a), e.stored("KV_"+offboard.BucketLedger))
		}
		time.Sleep(50 * time.Millisecond)
	}

	code, out, errs := e.ctl(t.Context(), "dead", "retry", tenant, "--all")
	e.waitFor("the retry answered", time.Minute, func() bool { return e.requestsWaiting() == 0 })
	if n := len(e.sim.Actions(e.tenantID)); n != 1 {
		t.Errorf("%d actions for the device, want 1 (exit %d, stdout %q)", n, code, out)
	}
	if code != exitFailed || !strings.Contains(out, "retried name-1 attempt 2") || !strings.Contains(out, "1 retried, 0 retried before (the stream dropped the repeat), 1 not retried") ||
		!strings.Contains(errs, "lost-1 was answered failed after offboard calls ") {
		t.Errorf("dead retry --all: exit %d, stdout %q, stderr %q", code, out, errs)
	}
}

// A request answered failed after offboard calls, sent again by its
// publisher within the duplicate window, is answered from the ledger: a
// dead letter more, and its result, the same message id, dropped as a
// repeat. dead retry read the results from its latest dead letter on
// (less resultsMargin), found none that counts calls, and retried it
// once the ledger had forgotten the id. The results are now read from
// the request id's first dead letter on for a dead letter the ledger may
// have forgotten. Not parallel: it sets resultsMargin.
func TestDeadRetryOfACalledRequestSentAgainTheLedgerForgot(t *testing.T) {
	nc, js := withLedgerTTL(t, 500*time.Millisecond)

	a := strings.Repeat("a", 40)
	res := failedAfterCalls(t, a, 1, 2)
	publishResult(t, js, res, 1)
	body := `{"requestId":"lost-1","machineId":"` + a + `"}`
	publishDead(t, js, offboard.CodeAPIError, body) // 1: its failure
	time.Sleep(100 * time.Millisecond)              // well past resultsMargin
	publishDead(t, js, offboard.CodeAPIError, body) // 2: sent again, answered from the ledger
	time.Sleep(time.Second)                         // the ledger forgets the id

	wantCalledRequestRefused(t, nc.ConnectedUrl())
}

// A request answered failed after offboard calls, sent again by its
// publisher later on, is answered from the ledger, which does not write
// its entry again: the entry is forgotten --ledger-ttl after the failure,
// while the copy's dead letter is younger. dead retry measured the age of
// the latest dead letter and retried the request once the ledger had
// forgotten the id, though that letter was younger than the ledger keeps
// entries: taken for a new request, its call could make a second action
// for the device. Not parallel: it sets resultsMargin.
func TestDeadRetryOfACalledRequestSentAgainLaterTheLedgerForgot(t *testing.T) {
	const ttl = 2 * time.Second
	nc, js := withLedgerTTL(t, ttl)

	a := strings.Repeat("a", 40)
	res := failedAfterCalls(t, a, 1, 2)
	ledger, err := queue.NewLedger(t.Context(), js)
	if err != nil {
		t.Fatal(err)
	}
	if err := ledger.Put(t.Context(), "contoso", "lost-1", nil, &queue.Entry{State: queue.StateDone, Seq: 1, Result: res}); err != nil {
		t.Fatal(err)
	}
	publishResult(t, js, res, 1)
	body := `{"requestId":"lost-1","machineId":"` + a + `"}`
	publishDead(t, js, offboard.CodeAPIError, body) // 1: its failure
	time.Sleep(ttl / 2)                             // the copy comes later
	// 2: sent again, answered from the ledger, its result published anew
	// past the duplicate window; the entry is not written again.
	publishResult(t, js, res, 1)
	publishDead(t, js, offboard.CodeAPIError, body)
	deadline := time.Now().Add(10 * time.Second)
	for {
		if e, err := ledger.Get(t.Context(), "contoso", "lost-1"); err == nil && e == nil {
			break // the ledger forgot the id
		}
		if time.Now().After(deadline) {
			t.Fatal("the ledger keeps lost-1")
		}
		time.Sleep(20 * time.Millisecond)
	}

	wantCalledRequestRefused(t, nc.ConnectedUrl())
}

// A request answered failed after offboard calls longer ago than the
// ledger keeps entries, then retried and answered failed again before any
// call, has a ledger entry of that retry's: it is retried. Not parallel:
// it sets resultsMargin.
func TestDeadRetryOfACalledRequestRetriedSinceIsRetried(t *testing.T) {
	const ttl = time.Second
	nc, js := withLedgerTTL(t, ttl)

	a := strings.Repeat("a", 40)
	body := `{"requestId":"lost-1","machineId":"` + a + `"}`
	for _, v := range []struct{ attempt, calls int }{{1, 2}, {2, 0}} {
		publishResult(t, js, failedAfterCalls(t, a, v.attempt, v.calls), v.attempt)
		publishDead(t, js, offboard.CodeAPIError, strings.Replace(body, "{", fmt.Sprintf(`{"attempt":%d,`, v.attempt), 1))
		if v.attempt == 1 {
			time.Sleep(ttl + 100*time.Millisecond) // the ledger forgets the first entry
		}
	}

	code, out, errs := ctl(t, nc.ConnectedUrl(), "dead", "retry", "contoso", "--all")
	if code != 0 || !strings.Contains(out, "retried lost-1 attempt 3") {
		t.Errorf("dead retry --all: exit %d, stdout %q, stderr %q", code, out, errs)
	}
}

// withLedgerTTL sets up contoso's streams with a ledger that keeps an
// entry ttl and a duplicate window of 500 ms, and has dead retry read
// results from 20 ms before a dead letter (resultsMargin, set back at
// the end: the test is not parallel).
func withLedgerTTL(t *testing.T, ttl time.Duration) (*nats.Conn, jetstream.JetStream) {
	t.Helper()
	nc, js := natstest.Connect(t)
	s := queue.Settings{Tenants: []string{"contoso"}, Duplicates: 500 * time.Millisecond, LedgerTTL: ttl}
	if _, err := queue.Ensure(t.Context(), js, s); err != nil {
		t.Fatal(err)
	}
	saved := resultsMargin
	resultsMargin = 20 * time.Millisecond
	t.Cleanup(func() { resultsMargin = saved })
	return nc, js
}

// failedAfterCalls is lost-1's result of attempt, failed api_error after
// calls offboard calls to machine id a.
func failedAfterCalls(t *testing.T, a string, attempt, calls int) []byte {
	t.Helper()
	res, err := (&offboard.Result{RequestID: "lost-1", Tenant: "contoso", MachineID: a, Outcome: offboard.OutcomeFailed, Attempts: calls, Attempt: attempt,
		Error: &offboard.ResultError{Code: offboard.CodeAPIError, Message: "gave up"}}).Marshal()
	if err != nil {
		t.Fatal(err)
	}
	return res
}

// publishResult publishes lost-1's result of attempt under its message id.
func publishResult(t *testing.T, js jetstream.JetStream, res []byte, attempt int) {
	t.Helper()
	if _, err := js.Publish(t.Context(), offboard.Subjects{}.Result("contoso"), res, jetstream.WithMsgID(offboard.ResultMsgID("contoso", "lost-1", attempt))); err != nil {
		t.Fatal(err)
	}
}

// A request answered failed after offboard calls, retried and answered
// failed again before any call: the retry's ledger entry keeps the
// earlier calls, and is forgotten --ledger-ttl after the retry's failure.
// The first failure's dead letter is no longer kept (removed by hand, or
// past a max age set on MDE_OFFBOARD_DEAD): dead retry read the results
// from the retry's dead letter on, found none that counts calls, and
// retried the request once the ledger had forgotten the id; taken for a
// new request, its call could make a second action for the device. The
// results of a request id the ledger may have forgotten are now read
// from its first result on. Not parallel: it sets resultsMargin.
func TestDeadRetryOfACalledRequestWhoseFirstDeadLetterIsGone(t *testing.T) {
	const ttl = time.Second
	nc, js := withLedgerTTL(t, ttl)

	calledThenRetriedWithoutCalls(t, js)
	s, err := js.Stream(t.Context(), offboard.StreamDead)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.DeleteMsg(t.Context(), 1); err != nil { // the first failure's dead letter
		t.Fatal(err)
	}
	time.Sleep(ttl + 100*time.Millisecond) // the ledger forgets the retry's entry

	wantCalledRequestRefused(t, nc.ConnectedUrl())
}

// A request answered failed after offboard calls, sent again by its
// publisher later on, has a dead letter of the copy younger than the
// ledger's entry, which the copy's answer does not write again. With the
// first failure's dead letter removed, dead retry read the results from
// the copy's dead letter on: the copy's result, published anew, made the
// entry look as young as it, and the request was retried once the ledger
// had forgotten the id. Not parallel: it sets resultsMargin.
func TestDeadRetryOfACalledRequestSentAgainWhoseFirstDeadLetterIsGone(t *testing.T) {
	const ttl = 2 * time.Second
	nc, js := withLedgerTTL(t, ttl)

	a := strings.Repeat("a", 40)
	// The result as the worker stores it: completed at its failure, and
	// published anew as it was stored.
	res, err := (&offboard.Result{RequestID: "lost-1", Tenant: "contoso", MachineID: a, Outcome: offboard.OutcomeFailed, Attempts: 2, Attempt: 1,
		Error: &offboard.ResultError{Code: offboard.CodeAPIError, Message: "gave up"}, CompletedAt: time.Now().UTC()}).Marshal()
	if err != nil {
		t.Fatal(err)
	}
	publishResult(t, js, res, 1)
	body := `{"requestId":"lost-1","machineId":"` + a + `"}`
	publishDead(t, js, offboard.CodeAPIError, body) // 1: its failure
	time.Sleep(ttl / 2)                             // the copy comes later
	// 2: sent again, answered from the ledger, its result published anew
	// past the duplicate window; the entry is not written again.
	publishResult(t, js, res, 1)
	publishDead(t, js, offboard.CodeAPIError, body)
	s, err := js.Stream(t.Context(), offboard.StreamDead)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.DeleteMsg(t.Context(), 1); err != nil { // the first failure's dead letter
		t.Fatal(err)
	}
	time.Sleep(ttl/2 + 200*time.Millisecond) // the ledger forgets the entry of the failure

	wantCalledRequestRefused(t, nc.ConnectedUrl())
}

// wantCalledRequestRefused runs dead retry --all of contoso against url
// and wants lost-1, answered failed after offboard calls, refused, and
// nothing retried: exit 1.
func wantCalledRequestRefused(t *testing.T, url string) {
	t.Helper()
	code, out, errs := ctl(t, url, "dead", "retry", "contoso", "--all")
	if code != exitFailed || !strings.Contains(out, "0 retried, 0 retried before (the stream dropped the repeat), 1 not retried") ||
		!strings.Contains(errs, "lost-1 was answered failed after offboard calls ") {
		t.Errorf("dead retry --all: exit %d, stdout %q, stderr %q", code, out, errs)
	}
}

// calledThenRetriedWithoutCalls publishes the results and dead letters of
// request lost-1 of a device (returned): failed after two offboard calls,
// then retried and failed again before any call.
func calledThenRetriedWithoutCalls(t *testing.T, js jetstream.JetStream) (device string) {
	t.Helper()
	device = strings.Repeat("a", 40)
	body := `{"requestId":"lost-1","machineId":"` + device + `"}`
	for _, v := range []struct{ attempt, calls int }{{1, 2}, {2, 0}} {
		publishResult(t, js, failedAfterCalls(t, device, v.attempt, v.calls), v.attempt)
		publishDead(t, js, offboard.CodeAPIError, strings.Replace(body, "{", fmt.Sprintf(`{"attempt":%d,`, v.attempt), 1))
		time.Sleep(100 * time.Millisecond) // well past resultsMargin
	}
	return device
}
