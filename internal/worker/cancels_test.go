package worker

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

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
	e.wantCancelled(t, want)
	if n := len(e.sim.Calls()); n != 1 {
		t.Errorf("%d API calls, want r-1's alone", n)
	}
	// r-2 waits for the next place in the quota.
	select {
	case r := <-e.results:
		t.Fatalf("result %s %s before the quota freed", r.RequestID, r.Outcome)
	case <-time.After(200 * time.Millisecond):
	}
	// An hour on frees the quota.
	if r := e.resultOnceTheQuotaFrees(t, "r-2"); r.RequestID != "r-2" || r.Outcome == offboard.OutcomeFailed {
		t.Fatalf("result %s %s %+v, want r-2's action", r.RequestID, r.Outcome, r.Error)
	}
	if n := e.w.tenants["contoso"].limits.API(mde.APIOffboard).Remaining(e.clock.Now())[0]; n != 0 {
		t.Errorf("%d calls left in the hour, want 0", n)
	}
}

// TestCancelPassLeavesALaterRequestWithACampaignsIDForm: a request sent
// after its campaign's cancel that merely has the form of the campaign's
// ids is not the campaign's. Pulled along by the pass of another cancel
// while the quota is spent, it is not answered cancelled: it has its call
// once the quota frees.
func TestCancelPassLeavesALaterRequestWithACampaignsIDForm(t *testing.T) {
	t.Parallel()
	e := setupLoop(t, `["1/1h"]`, RetryPolicy{})
	e.publish(t, "r-1")
	e.wantCreated(t, "r-1")
	e.publish(t, campaign.RequestID("wave1", 1))
	e.cancelCampaign(t, "wave1")
	e.wantCancelled(t, map[string]bool{campaign.RequestID("wave1", 1): true})
	time.Sleep(3 * time.Second) // past campaign.ClockMargin (2 s)
	later := campaign.RequestID("wave1", 4711)
	e.publish(t, campaign.RequestID("wave2", 1))
	e.publish(t, later)
	e.cancelCampaign(t, "wave2") // its pass pulls both
	e.wantCancelled(t, map[string]bool{campaign.RequestID("wave2", 1): true})
	select {
	case r := <-e.results:
		t.Fatalf("result %s %s %+v before the quota freed", r.RequestID, r.Outcome, r.Error)
	case <-time.After(200 * time.Millisecond):
	}
	// already_pending: r-1's action is for the same device.
	if r := e.resultOnceTheQuotaFrees(t, later); r.RequestID != later || r.Outcome == offboard.OutcomeFailed {
		t.Fatalf("result %s %s %+v, want %s's call", r.RequestID, r.Outcome, r.Error, later)
	}
}

// resultOnceTheQuotaFrees moves the clock an hour on, which frees the
// quota of 1/1h, and takes the next result. The loop reads the clock
// before it sets its timer for the place: on a busy machine the clock may
// move in between, and the timer then runs an hour from the new time.
// The clock moves on by an hour until a result comes.
func (e *loopEnv) resultOnceTheQuotaFrees(t *testing.T, want string) offboard.Result {
	t.Helper()
	deadline := time.After(20 * time.Second)
	for {
		e.clock.Advance(time.Hour)
		select {
		case r := <-e.results:
			return r
		case <-time.After(time.Second):
		case <-deadline:
			t.Fatalf("no result for %s once the quota freed", want)
		}
	}
}

// TestCancelPassTakesALaterRetryOfTheCampaign: a retry (attempt 2) of a
// cancelled campaign's row, sent after the cancel with a source of its
// own, is the campaign's whenever sent. Pulled along by the pass of
// another cancel while the quota is spent, it is answered cancelled at
// once, not handed back to wait for the quota.
func TestCancelPassTakesALaterRetryOfTheCampaign(t *testing.T) {
	t.Parallel()
	e := setupLoop(t, `["1/1h"]`, RetryPolicy{})
	e.publish(t, "r-1")
	e.wantCreated(t, "r-1")
	e.cancelCampaign(t, "wave1")
	time.Sleep(3 * time.Second) // past campaign.ClockMargin (2 s)
	retry := campaign.RequestID("wave1", 7)
	data, _ := json.Marshal(map[string]any{"requestId": retry, "machineId": loopMachine, "attempt": 2, "source": "cmdb"})
	m := nats.NewMsg(offboard.Subjects{}.Request("contoso", offboard.Normal))
	m.Data = data
	m.Header.Set(jetstream.MsgIDHeader, offboard.RequestMsgID("contoso", retry, 2))
	if _, err := e.js.PublishMsg(t.Context(), m); err != nil {
		t.Fatal(err)
	}
	e.publish(t, campaign.RequestID("wave2", 1))
	e.cancelCampaign(t, "wave2") // its pass pulls both
	e.wantCancelled(t, map[string]bool{retry: true, campaign.RequestID("wave2", 1): true})
}

// wantCancelled takes results until each of want's request ids has come,
// answered cancelled, and fails at any other result first.
func (e *loopEnv) wantCancelled(t *testing.T, want map[string]bool) {
	t.Helper()
	e.wantCancelledWithin(t, want, 20*time.Second, "while the quota is spent")
}

// wantCancelledWithin is wantCancelled waiting at most within for the
// next result; why ends the failure's message.
func (e *loopEnv) wantCancelledWithin(t *testing.T, want map[string]bool, within time.Duration, why string) {
	t.Helper()
	for len(want) > 0 {
		select {
		case r := <-e.results:
			if !want[r.RequestID] || r.Error == nil || r.Error.Code != offboard.CodeCancelled {
				t.Fatalf("result %s %s %+v, want one of %v cancelled", r.RequestID, r.Outcome, r.Error, want)
			}
			delete(want, r.RequestID)
		case <-time.After(within):
			t.Fatalf("%v not answered %s", want, why)
		}
	}
}
