package worker

import (
	"testing"
	"time"

	"github.com/contoso-secops/mde-offboard/internal/campaign"
	"github.com/contoso-secops/mde-offboard/internal/mde"
	"github.com/contoso-secops/mde-offboard/offboard"
)

// TestCancelReachesRequestsWaitingForQuota: with the hour's one call
// spent, a cancelled campaign's requests waiting in the stream are
// answered cancelled without the clock moving: they need no call, so they
// do not wait for the quota. A request of no campaign behind them waits
// for the quota, and is answered once it frees.
func TestCancelReachesRequestsWaitingForQuota(t *testing.T) {
	t.Parallel()
	e := setupLoop(t, `["1/1h"]`, RetryPolicy{})
	e.publish(t, "r-1")
	e.wantCreated(t, "r-1")
	want := map[string]bool{}
	for i := range 3 {
		id := campaign.RequestID("wave1", i+1)
		e.publish(t, id)
		want[id] = true
	}
	e.publish(t, "r-2")
	e.cancelCampaign(t, "wave1")
	for len(want) > 0 {
		select {
		case r := <-e.results:
			if !want[r.RequestID] || r.Error == nil || r.Error.Code != offboard.CodeCancelled {
				t.Fatalf("result %s %s %+v, want one of %v cancelled", r.RequestID, r.Outcome, r.Error, want)
			}
			delete(want, r.RequestID)
		case <-time.After(20 * time.Second):
			t.Fatalf("%v not answered while the quota is spent", want)
		}
	}
	if n := len(e.sim.Calls()); n != 1 {
		t.Errorf("%d API calls, want r-1's alone", n)
	}
	// r-2 waits for the next place in the quota.
	select {
	case r := <-e.results:
		t.Fatalf("result %s %s before the quota freed", r.RequestID, r.Outcome)
	case <-time.After(200 * time.Millisecond):
	}
	e.clock.Advance(time.Hour)
	select {
	case r := <-e.results:
		if r.RequestID != "r-2" || r.Outcome == offboard.OutcomeFailed {
			t.Fatalf("result %s %s %+v, want r-2's action", r.RequestID, r.Outcome, r.Error)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("no result for r-2 once the quota freed")
	}
	if n := e.w.tenants["contoso"].limits.API(mde.APIOffboard).Remaining(e.clock.Now())[0]; n != 0 {
		t.Errorf("%d calls left in the hour, want 0", n)
	}
}
