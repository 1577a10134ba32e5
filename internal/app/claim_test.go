package app

import (
	"testing"
	"time"

	"github.com/contoso-secops/mde-offboard/internal/campaign"
	"github.com/contoso-secops/mde-offboard/internal/queue"
	"github.com/contoso-secops/mde-offboard/offboard"
)

// TestClaimedThenLeftRequestOfCancelledCampaign: a campaign request that
// claimed its id and was left before any call (it waited for the budget
// when the worker stopped) is answered cancelled once its campaign is
// cancelled, with no call: its own claim says no call was sent. (When the
// claim was a "calling" entry, the request came back as created.)
func TestClaimedThenLeftRequestOfCancelledCampaign(t *testing.T) {
	e := setup(t, envConfig{
		tenants: []string{"contoso"}, machines: 2,
		extra: "    guards:\n      budget: \"1/1h\"\n",
	})
	ms := e.tenants["contoso"].machines
	res := e.collect("mde.offboard.result.>")
	// The first request spends the budget.
	if r := e.one(res, "mde.offboard.request.contoso", map[string]any{"requestId": "plain-1", "machineId": ms[0].ID}); r.Outcome != offboard.OutcomeCreated {
		t.Fatalf("first request: %s", r.Outcome)
	}
	// A campaign row claims its id, then waits for the budget.
	id := campaign.RequestID("wave1", 1)
	e.publish("mde.offboard.request.contoso", map[string]any{"requestId": id, "machineId": ms[1].ID, "source": campaign.Source("wave1")}, id)
	ledger, err := queue.NewLedger(t.Context(), e.js)
	if err != nil {
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, "the campaign request claimed", func() bool {
		entry, err := ledger.Get(t.Context(), "contoso", id)
		return err == nil && entry != nil && entry.State == queue.StateClaimed
	})
	// The operator cancels the campaign, and a rolling update stops the
	// worker: the waiting request is left, no call sent.
	kv, err := campaign.ControlBucket(t.Context(), e.js)
	if err != nil {
		t.Fatal(err)
	}
	if err := campaign.SetMark(t.Context(), kv, "contoso", "wave1", campaign.Mark{Cancelled: true, By: "op", At: time.Now()}); err != nil {
		t.Fatal(err)
	}
	e.stop()
	e.start()
	res = e.collect("mde.offboard.result.>")
	e.setBudget("contoso", "100/1h") // the request is fetched again
	eventually(t, 20*time.Second, "the campaign request answered", func() bool { return len(res.snapshot()["contoso/"+id]) > 0 })
	rs := res.snapshot()["contoso/"+id]
	if len(rs) != 1 || rs[0].Outcome != offboard.OutcomeFailed || rs[0].Error == nil || rs[0].Error.Code != offboard.CodeCancelled {
		for _, r := range rs {
			t.Errorf("result: %s %+v, want one, failed cancelled", r.Outcome, r.Error)
		}
	}
	if n := e.offboardCalls(e.tenants["contoso"].tenantID, ms[1].ID); n != 0 {
		t.Errorf("%d offboard calls for a request of a cancelled campaign that had none before the cancel", n)
	}
}
