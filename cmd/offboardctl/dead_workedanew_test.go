package main

import (
	"strings"
	"testing"
	"time"

	"github.com/contoso-secops/mde-offboard/offboard"
)

// A request answered failed after offboard calls, sent again by its
// publisher once the ledger had forgotten the id: worked on anew, it is
// answered failed after calls again, a new ledger entry written, and its
// result, under the same message id past the duplicate window, stored
// with its own completedAt. dead retry counted the entry from the first
// failure's result, said the calls were made longer ago than the ledger
// keeps entries, and refused the request, whose entry the ledger keeps.
// Not parallel: it sets resultsMargin.
func TestDeadRetryOfACalledRequestWorkedAnewIsRetried(t *testing.T) {
	const ttl = time.Second
	nc, js := withLedgerTTL(t, ttl)

	a := strings.Repeat("a", 40)
	body := `{"requestId":"lost-1","machineId":"` + a + `"}`
	for i := range 2 {
		res, err := (&offboard.Result{RequestID: "lost-1", Tenant: "contoso", MachineID: a, Outcome: offboard.OutcomeFailed, Attempts: 2, Attempt: 1,
			Error: &offboard.ResultError{Code: offboard.CodeAPIError, Message: "gave up"}, CompletedAt: time.Now().UTC()}).Marshal()
		if err != nil {
			t.Fatal(err)
		}
		publishResult(t, js, res, 1)
		publishDead(t, js, offboard.CodeAPIError, body)
		if i == 0 {
			time.Sleep(ttl + 100*time.Millisecond) // the ledger forgets the first entry
		}
	}

	code, out, errs := ctl(t, nc.ConnectedUrl(), "dead", "retry", "contoso", "--all")
	if code != exitOK || !strings.Contains(out, "retried lost-1 attempt 2") {
		t.Errorf("dead retry --all: exit %d, stdout %q, stderr %q", code, out, errs)
	}
}
