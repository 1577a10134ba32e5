package app

import (
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/contoso-secops/mde-offboard/offboard"
)

// TestNewRequestDoesNotReadTheLedger: a new request costs the ledger its
// claim (a create, which also tells that the id is new), the "calling"
// entry before the call and the result: no read.
func TestNewRequestDoesNotReadTheLedger(t *testing.T) {
	e := setup(t, envConfig{tenants: []string{"contoso"}, machines: 5})
	results := e.collect("mde.offboard.result.>")
	var reads, writes atomic.Int64
	count := func(subject string, n *atomic.Int64) {
		sub, err := e.nc.Subscribe(subject, func(*nats.Msg) { n.Add(1) })
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = sub.Unsubscribe() })
	}
	count("$JS.API.DIRECT.GET.KV_MDE_OFFBOARD_LEDGER", &reads)
	count("$JS.API.DIRECT.GET.KV_MDE_OFFBOARD_LEDGER.>", &reads)
	count("$JS.API.STREAM.MSG.GET.KV_MDE_OFFBOARD_LEDGER", &reads)
	count("$KV.MDE_OFFBOARD_LEDGER.>", &writes)
	if err := e.nc.Flush(); err != nil {
		t.Fatal(err)
	}
	ms := e.tenants["contoso"].machines
	for i, m := range ms {
		id := fmt.Sprintf("new-%d", i)
		res := e.one(results, "mde.offboard.request.contoso", map[string]any{"requestId": id, "machineId": m.ID})
		if res.Outcome != offboard.OutcomeCreated {
			t.Fatalf("%s: outcome %q, want created", id, res.Outcome)
		}
	}
	if err := e.nc.Flush(); err != nil {
		t.Fatal(err)
	}
	if r, w := reads.Load(), writes.Load(); r != 0 || w != int64(3*len(ms)) {
		t.Errorf("%d requests: %d ledger reads, %d writes; want 0 and %d", len(ms), r, w, 3*len(ms))
	}

	// The same ids again (new messages): the claim fails, the ledger is
	// read and answers them; no second call.
	reads.Store(0)
	for i, m := range ms {
		id := fmt.Sprintf("new-%d", i)
		e.publish("mde.offboard.request.contoso", map[string]any{"requestId": id, "machineId": m.ID}, id+"-again")
	}
	eventually(t, 10*time.Second, "the repeated requests acked", func() bool { return e.streamMsgs("MDE_OFFBOARD_REQUESTS") == 0 })
	if r := reads.Load(); r < int64(len(ms)) {
		t.Errorf("%d repeated requests: %d ledger reads, want one each at least", len(ms), r)
	}
	for i, m := range ms {
		if n := e.offboardCalls(e.tenants["contoso"].tenantID, m.ID); n != 1 {
			t.Errorf("new-%d: %d offboard calls, want 1", i, n)
		}
	}
}
