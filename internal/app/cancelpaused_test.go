package app

import (
	"testing"
	"time"

	"github.com/contoso-secops/mde-offboard/internal/campaign"
	"github.com/contoso-secops/mde-offboard/internal/control"
	"github.com/contoso-secops/mde-offboard/offboard"
)

// TestCancelWhilePausedOnTwoReplicas: with two replicas, a campaign
// cancelled while an operator's pause holds its tenant has its requests
// answered cancelled within seconds, once each, while the pause holds, by
// whichever replica serves the tenant: no call. The other requests keep
// waiting, and the resume has them called, each once.
func TestCancelWhilePausedOnTwoReplicas(t *testing.T) {
	t.Parallel()
	e := setup(t, envConfig{tenants: []string{"contoso"}, machines: 5})
	e.replica()
	res := e.collect("mde.offboard.result.>")
	e.control(control.ActionPause, "contoso", control.PriorityAll)
	time.Sleep(time.Second) // the contract's time for a control to take effect
	ms := e.tenants["contoso"].machines
	for i, m := range ms[:3] {
		id := campaign.RequestID("wave1", i+1)
		e.publish("mde.offboard.request.contoso.bulk", map[string]any{"requestId": id, "machineId": m.ID, "source": campaign.Source("wave1")}, "contoso:"+id)
	}
	other := campaign.RequestID("wave2", 1)
	e.publish("mde.offboard.request.contoso.bulk", map[string]any{"requestId": other, "machineId": ms[3].ID, "source": campaign.Source("wave2")}, "contoso:"+other)
	e.publish("mde.offboard.request.contoso", map[string]any{"requestId": "single-1", "machineId": ms[4].ID}, "contoso:single-1")
	time.Sleep(300 * time.Millisecond)
	kv, err := campaign.ControlBucket(t.Context(), e.js)
	if err != nil {
		t.Fatal(err)
	}
	if err := campaign.SetMark(t.Context(), kv, "contoso", "wave1", campaign.Mark{Cancelled: true, By: "op", At: time.Now()}); err != nil {
		t.Fatal(err)
	}
	got := res.wait(t, 3, 10*time.Second)
	for key, rs := range got {
		if r := rs[len(rs)-1]; len(rs) != 1 || r.Error == nil || r.Error.Code != offboard.CodeCancelled {
			t.Errorf("%s: %d results, the last %s %+v; want one, cancelled", key, len(rs), r.Outcome, r.Error)
		}
	}
	time.Sleep(500 * time.Millisecond)
	if n := len(res.snapshot()); n != 3 {
		t.Errorf("%d requests answered while paused, want wave1's 3", n)
	}
	if calls := e.offboardCallsSince("contoso", time.Time{}); len(calls) != 0 {
		t.Errorf("%d offboard calls while paused, want 0", len(calls))
	}
	e.control(control.ActionResume, "contoso", control.PriorityAll)
	res.wait(t, 5, 20*time.Second)
	time.Sleep(500 * time.Millisecond)
	for key, rs := range res.snapshot() {
		if len(rs) != 1 {
			t.Errorf("%s: %d results, want one", key, len(rs))
		}
	}
	if n := res.createdOf("contoso"); n != 2 {
		t.Errorf("%d created after the resume, want wave2's row and single-1", n)
	}
	if calls := e.offboardCallsSince("contoso", time.Time{}); len(calls) != 2 {
		t.Errorf("%d offboard calls, want 2", len(calls))
	}
}
