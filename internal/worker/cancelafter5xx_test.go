package worker

import (
	"net/http"
	"testing"
	"time"

	"github.com/contoso-secops/mde-offboard/internal/campaign"
	"github.com/contoso-secops/mde-offboard/internal/mde"
	"github.com/contoso-secops/mde-offboard/offboard"
)

// TestCancelAfterA5xxWaitsForNoQuota: a campaign's request whose only
// call was answered 503, its campaign cancelled during the backoff, makes
// no call after the cancel: it leaves at once, and, back in the stream, is
// taken without quota, finds no action and is answered cancelled. Before,
// its retry waited in the worker for a place in the offboard quota (a day
// away here: the 503 took the only one) to find the cancel, and, once it
// left, it waited in the stream for a place again: the tenant's loop took
// requests without quota only as a cancel landed. A campaign cancelled
// during an outage of 5xx had such requests answered hours later.
func TestCancelAfterA5xxWaitsForNoQuota(t *testing.T) {
	t.Parallel()
	board := newSwitchboard()
	e := setupLoopOpts(t, `["1/24h"]`, "", RetryPolicy{Base: time.Second, Max: time.Second}, func(o *Options) {
		// Past by the time the request leaves (the looks for the
		// attempt's action and the backoff take longer): its
		// redelivery looks once and settles it.
		o.Control, o.Presence, o.ActionShowsWithin = board, marked{instance: "w-1"}, 2*time.Second
	})
	e.sim.InjectStatus(loopTenantID, mde.APIOffboard, http.StatusServiceUnavailable, "", "", 1, 0)
	id := campaign.RequestID("wave1", 1)
	e.publishPrio(t, id, offboard.Bulk)
	e.waitForCalls(t, mde.APIOffboard, 1)
	e.cancelSeen(t, "wave1", id) // the attempt's backoff waits on the fake clock
	e.cancelledOnTheFakeClock(t, id, "the request waits for the offboard quota")
}

// TestCancelAfterA5xxIsTakenAgainOnceItsActionWouldShow: a campaign's
// request whose call was answered 503, its campaign cancelled during the
// backoff, leaves until the call's action would show in lists
// (ActionShowsWithin after it): taken again then, one look settles it.
// Before, it came back 5 s later, read the device's actions a few times
// and left again, over and over until then: for each request of a
// campaign cancelled during an outage of 5xx, a dozen reads or more
// where one does.
func TestCancelAfterA5xxIsTakenAgainOnceItsActionWouldShow(t *testing.T) {
	t.Parallel()
	board := newSwitchboard()
	e := setupLoopOpts(t, `["100/1m"]`, "", RetryPolicy{Base: 100 * time.Millisecond, Max: 100 * time.Millisecond}, func(o *Options) {
		o.Control, o.Presence, o.ActionShowsWithin = board, marked{instance: "w-1"}, 20*time.Second
	})
	e.sim.InjectStatus(loopTenantID, mde.APIOffboard, http.StatusServiceUnavailable, "", "", 1, 0)
	id := campaign.RequestID("wave1", 1)
	e.publishPrio(t, id, offboard.Bulk)
	e.waitForCalls(t, mde.APIOffboard, 1)
	e.cancelSeen(t, "wave1", id)
	e.waitLeft(t, 100*time.Millisecond) // the looks and the backoff, about a second
	reads := func() int {
		n := 0
		for _, c := range e.sim.Calls() {
			if c.API == mde.APIMachineActions {
				n++
			}
		}
		return n
	}
	before := reads()
	// The fake clock stands still: the action would show 19 s or so
	// from now, and the request is not taken again within 7 s.
	for deadline := time.Now().Add(7 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		if e.busy() || reads() > before {
			t.Fatalf("taken again %v after it left, before its call's action would show; %d reads of actions, %d before", 7*time.Second-time.Until(deadline), reads(), before)
		}
	}
	if n := e.offboardCalls(); n != 1 {
		t.Errorf("%d offboard calls, want only the one answered 503", n)
	}
}
