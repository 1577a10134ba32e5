package worker

import (
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jonboulle/clockwork"

	"github.com/contoso-secops/mde-offboard/internal/mde"
	"github.com/contoso-secops/mde-offboard/internal/mde/mdesim"
	"github.com/contoso-secops/mde-offboard/offboard"
)

// hiddenThenRefusedLists answers the device's action lists, once armed,
// with an empty list (the earlier action does not show yet) until an
// offboard call goes out, then refuses the next list once (400); after
// that the simulator answers.
type hiddenThenRefusedLists struct {
	next           http.RoundTripper
	armed, posted  atomic.Bool
	refused        atomic.Bool
	emptyAnswered  atomic.Int64
	offboardsAfter atomic.Int64
}

func (h *hiddenThenRefusedLists) RoundTrip(r *http.Request) (*http.Response, error) {
	if !h.armed.Load() {
		return h.next.RoundTrip(r)
	}
	if r.Method == http.MethodPost {
		h.posted.Store(true)
		h.offboardsAfter.Add(1)
		return h.next.RoundTrip(r)
	}
	if r.Method != http.MethodGet || !strings.HasSuffix(r.URL.Path, "/machineactions") {
		return h.next.RoundTrip(r)
	}
	switch {
	case !h.posted.Load():
		h.emptyAnswered.Add(1)
		return answer(r, http.StatusOK, `{"value":[]}`), nil
	case h.refused.CompareAndSwap(false, true):
		return answer(r, http.StatusBadRequest, `{"error":{"code":"BadRequest","message":"list refused"}}`), nil
	}
	return h.next.RoundTrip(r)
}

func answer(r *http.Request, status int, body string) *http.Response {
	return &http.Response{StatusCode: status, Status: http.StatusText(status), Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1,
		Header: http.Header{"Content-Type": {"application/json"}}, Body: io.NopCloser(strings.NewReader(body)),
		ContentLength: int64(len(body)), Request: r}
}

// TestRetryLeftAfterItsCallLooksForTheEarlierCallsAction: r-1 was
// answered failed (api_error) after a call ten minutes ago whose action
// lists did not show; that action has finished since. Its retry
// (attempt 2) looks for it, lists still do not show it, and writes its
// "calling" entry over the failed result; its attempt is answered 503 and
// the look for that attempt's action is refused, so the request goes
// back to the stream. Taken again, it looked only for actions made since
// its own "calling" entry, missed the first call's action, and called:
// the API took it, the first action being finished, and made a second
// action for the device. The "calling" entry keeps the earlier calls.
func TestRetryLeftAfterItsCallLooksForTheEarlierCallsAction(t *testing.T) {
	t.Parallel()
	lists := &hiddenThenRefusedLists{}
	// The simulator's clock runs ten minutes behind: the first call's
	// action is that old, past the skew a look allows around a call.
	simClock := clockwork.NewFakeClockAt(time.Now().Add(-10 * time.Minute))
	e := setupLoopSim(t, mdesim.Options{Clock: simClock}, `["100/1m"]`, "", RetryPolicy{NotFoundCheck: 1}, func(o *Options) {
		o.Presence = marked{instance: "w-1"}
	}, func(next http.RoundTripper) http.RoundTripper { lists.next = next; return lists })
	const comment = "offboard r-1"
	v := e.w.tenants["contoso"].Client.Offboard(t.Context(), loopMachine, comment)
	if v.Class != mde.Success {
		t.Fatal(v.Error())
	}
	first, err := mde.ParseAction(v.Body)
	if err != nil {
		t.Fatal(err)
	}
	if !e.sim.SetActionStatus(loopTenantID, first.ID, mdesim.StatusSucceeded) {
		t.Fatal("the first action not finished")
	}
	failed := &offboard.Result{RequestID: "r-1", Tenant: "contoso", MachineID: loopMachine, Outcome: offboard.OutcomeFailed,
		Error: offboard.Failed(offboard.CodeAPIError, "the device's offboard actions show none of ours"), Attempts: 1, Attempt: 1,
		RequestSeq: 99, ReceivedAt: simClock.Now().Add(-time.Second).UTC(), CompletedAt: simClock.Now().UTC()}
	data, err := failed.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	if err := e.w.opts.Ledger.Finish(t.Context(), "contoso", "r-1", nil, 99, data); err != nil {
		t.Fatal(err)
	}
	lists.armed.Store(true)
	e.sim.InjectStatus(loopTenantID, mdesim.APIOffboard, http.StatusServiceUnavailable, "ServiceUnavailable", "try later", 1, 0)
	e.publishRequest(t, "r-1", map[string]any{"machineId": loopMachine, "comment": comment, "attempt": 2})
	r := e.resultDriven(t)
	if lists.emptyAnswered.Load() == 0 || !lists.refused.Load() {
		t.Fatalf("the retry's first delivery did not go as set up: %d empty lists, a list refused %v", lists.emptyAnswered.Load(), lists.refused.Load())
	}
	var got struct{ ID string }
	_ = json.Unmarshal(r.MachineAction, &got)
	actions := e.sim.Actions(loopTenantID)
	t.Logf("%d actions for the device, %d offboard calls of the retry; result %s with action %s", len(actions), lists.offboardsAfter.Load(), r.Outcome, got.ID)
	if len(actions) != 1 || r.Outcome != offboard.OutcomeCreated || got.ID != first.ID {
		t.Errorf("retry: %s %+v with action %q and %d actions for the device; want created with the first call's action %s, and no second", r.Outcome, r.Error, got.ID, len(actions), first.ID)
	}
}
