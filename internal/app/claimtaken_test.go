package app

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/contoso-secops/mde-offboard/internal/config"
	"github.com/contoso-secops/mde-offboard/internal/mde"
	"github.com/contoso-secops/mde-offboard/internal/mde/mdesim"
	"github.com/contoso-secops/mde-offboard/internal/queue"
	"github.com/contoso-secops/mde-offboard/offboard"
)

// TestClaimOfAnotherDeliveryIsNotAnsweredOver: a worker claimed a
// request (its guards read the device first) and was then frozen past
// the ack wait, so the request went to this worker, which reads that
// claim as its message's own. While this worker reads the device, the
// other one thaws, writes its "calling" entry over its claim and makes
// its call. The guard refuses the device here (it was seen an hour ago,
// the tenant wants 72 h), but the call went out elsewhere: this worker
// must not publish its refusal, as its ledger write over the claim
// fails. The request, taken again, finds the other worker's action and
// is answered created.
func TestClaimOfAnotherDeliveryIsNotAnsweredOver(t *testing.T) {
	t.Parallel()
	thawed := make(chan struct{})
	var claim *queue.Entry
	c := envConfig{tenants: []string{"contoso"}, machines: 1, noStart: true,
		extra: "    guards:\n      requireInactiveFor: 72h\n"}
	bind := onFirstCall(&c, func(call mdesim.Call) bool { return call.API == mde.APIMachines }, func(e *env) {
		// The frozen worker thaws: its claim becomes its call's entry.
		ledger, err := queue.NewLedger(t.Context(), e.js)
		if err == nil {
			calling := *claim
			calling.State, calling.Started = queue.StateCalling, time.Now().UTC()
			err = ledger.Put(t.Context(), "contoso", "frozen-1", claim, &calling)
		}
		if err != nil {
			t.Error(err)
		}
		close(thawed)
	})
	e := setup(t, c)
	e.start()
	bind(e)
	res := e.collect("mde.offboard.result.>")
	tt := e.tenants["contoso"]
	m := tt.machines[0]
	// The frozen worker's claim names the request's own place in the
	// stream: the same message, delivered again here.
	claim = &queue.Entry{State: queue.StateClaimed, MachineID: m.ID, Started: time.Now().UTC(), Writer: "frozen-replica"}
	e.putForNextRequest(t, "frozen-1", claim)
	e.publish("mde.offboard.request.contoso", map[string]any{"requestId": "frozen-1", "machineId": m.ID}, "contoso:frozen-1")
	select {
	case <-thawed:
	case <-time.After(20 * time.Second):
		t.Fatal("the device was not read")
	}
	// The thawed worker's call.
	action := e.offboardAsTheWorker(e.app.tenants[0], config.CommentData{RequestID: "frozen-1", Tenant: "contoso", MachineID: m.ID})
	rs := res.wait(t, 1, 60*time.Second)["contoso/frozen-1"]
	var got struct{ ID string }
	if len(rs) > 0 {
		_ = json.Unmarshal(rs[0].MachineAction, &got)
	}
	if len(rs) != 1 || rs[0].Outcome != offboard.OutcomeCreated || got.ID != action.ID {
		for _, r := range rs {
			t.Errorf("result %s %+v, want one, created with the action %s the other worker's call made", r.Outcome, r.Error, action.ID)
		}
	}
	if n := e.offboardCalls(tt.tenantID, m.ID); n != 1 {
		t.Errorf("%d offboard calls, want only the other worker's", n)
	}
}
