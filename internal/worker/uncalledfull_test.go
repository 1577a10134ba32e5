package worker

import (
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/contoso-secops/mde-offboard/internal/queue"
	"github.com/contoso-secops/mde-offboard/offboard"
)

// countedLists counts the device's action lists.
type countedLists struct {
	next  http.RoundTripper
	lists atomic.Int64
}

func (c *countedLists) RoundTrip(r *http.Request) (*http.Response, error) {
	if r.Method == http.MethodGet && strings.HasSuffix(r.URL.Path, "/machineactions") {
		c.lists.Add(1)
	}
	return c.next.RoundTrip(r)
}

// TestRequestLeftBeforeItsCallIsNotLookedForWithOldNotes: this process
// left as many requests before their call as it notes (an outage, say)
// whose next delivery it never saw: another replica took it, or it found
// the claim written as the request went back. Those notes were never
// taken back, and with the list full no request was noted any more: a
// request left in the next outage, with no ledger entry written, was
// taken at its next delivery for one whose entry is gone after a call,
// and the device's actions were listed before its call.
func TestRequestLeftBeforeItsCallIsNotLookedForWithOldNotes(t *testing.T) {
	t.Parallel()
	counted := &countedLists{}
	e := setupLoopTransport(t, `["100/1m"]`, "", RetryPolicy{}, nil, func(next http.RoundTripper) http.RoundTripper {
		counted.next = next
		return counted
	})
	left := &e.w.tenants["contoso"].uncalled
	for i := range uint64(uncalledKept) {
		left.note(1<<40+i, 1)
	}
	ctx := t.Context()
	if err := e.js.DeleteKeyValue(ctx, offboard.BucketLedger); err != nil {
		t.Fatal(err)
	}
	e.publish(t, "r-1")
	cons, err := e.js.Consumer(ctx, offboard.StreamRequests, queue.ConsumerName("contoso", offboard.Normal))
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(20 * time.Second)
	for {
		info, err := cons.Info(ctx)
		if err == nil && info.NumRedelivered > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the request was not left while the ledger was away")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if _, err := e.js.CreateKeyValue(ctx, queue.Settings{}.Ledger()); err != nil {
		t.Fatal(err)
	}
	r := e.resultDriven(t)
	if r.Outcome != offboard.OutcomeCreated {
		t.Fatalf("result %s %+v, want created", r.Outcome, r.Error)
	}
	if n := counted.lists.Load(); n != 0 {
		t.Errorf("%d action lists, want none: this process left the request before any call", n)
	}
}
