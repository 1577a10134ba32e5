package app

import (
	"testing"
	"time"

	"github.com/contoso-secops/mde-offboard/internal/campaign"
	"github.com/contoso-secops/mde-offboard/internal/control"
	"github.com/contoso-secops/mde-offboard/internal/queue"
	"github.com/contoso-secops/mde-offboard/offboard"
)

// TestClaimedThenLeftRequestOfCancelledCampaign: a campaign request whose
// own claim is in the ledger (a worker claimed it, then stopped before
// its call) is answered cancelled once its campaign is cancelled, with no
// call: its claim says no call was sent. (A "calling" entry in its place
// would have it looked for and offboarded.)
func TestClaimedThenLeftRequestOfCancelledCampaign(t *testing.T) {
	e := setup(t, envConfig{tenants: []string{"contoso"}, machines: 1})
	m := e.tenants["contoso"].machines[0]
	res := e.collect("mde.offboard.result.>")
	// Paused, the tenant's requests stay in the stream: the claim below is
	// written as the worker that took the request before would have.
	e.control(control.ActionPause, "contoso", "all")
	eventually(t, 10*time.Second, "the worker paused", func() bool {
		mfs, err := e.reg.Gather()
		if err != nil {
			t.Fatal(err)
		}
		for _, mf := range mfs {
			if mf.GetName() == "mde_offboard_tenant_paused" {
				for _, m := range mf.GetMetric() {
					if m.GetGauge().GetValue() == 1 {
						return true
					}
				}
			}
		}
		return false
	})
	id := campaign.RequestID("wave1", 1)
	ack := e.publish("mde.offboard.request.contoso", map[string]any{"requestId": id, "machineId": m.ID, "source": campaign.Source("wave1")}, id)
	ledger, err := queue.NewLedger(t.Context(), e.js)
	if err != nil {
		t.Fatal(err)
	}
	claim := &queue.Entry{State: queue.StateClaimed, Seq: ack.Sequence, MachineID: m.ID, Started: time.Now().UTC()}
	if err := ledger.Put(t.Context(), "contoso", id, nil, claim); err != nil {
		t.Fatal(err)
	}
	// The operator cancels the campaign; the tenant is resumed.
	kv, err := campaign.ControlBucket(t.Context(), e.js)
	if err != nil {
		t.Fatal(err)
	}
	if err := campaign.SetMark(t.Context(), kv, "contoso", "wave1", campaign.Mark{Cancelled: true, By: "op", At: time.Now()}); err != nil {
		t.Fatal(err)
	}
	e.control(control.ActionResume, "contoso", "all")
	eventually(t, 20*time.Second, "the campaign request answered", func() bool { return len(res.snapshot()["contoso/"+id]) > 0 })
	rs := res.snapshot()["contoso/"+id]
	if len(rs) != 1 || rs[0].Outcome != offboard.OutcomeFailed || rs[0].Error == nil || rs[0].Error.Code != offboard.CodeCancelled {
		for _, r := range rs {
			t.Errorf("result: %s %+v, want one, failed cancelled", r.Outcome, r.Error)
		}
	}
	if n := e.offboardCalls(e.tenants["contoso"].tenantID, m.ID); n != 0 {
		t.Errorf("%d offboard calls for a request of a cancelled campaign that had none before the cancel", n)
	}
}
