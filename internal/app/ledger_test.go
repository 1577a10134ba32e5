package app

import (
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/contoso-secops/mde-offboard/internal/config"
	"github.com/contoso-secops/mde-offboard/internal/mde/mdesim"
	"github.com/contoso-secops/mde-offboard/internal/queue"

	"github.com/contoso-secops/mde-offboard/offboard"
)

// TestNewRequestDoesNotReadTheLedger: a new request costs the ledger two
// writes: the "calling" entry before the call (a create, which also tells
// that the id is new) and the result; no claim, no read. The same ids
// sent again as new messages are answered from the ledger with no second
// call, also when the device they name now is one a guard refuses unread:
// the stored answer stands.
func TestNewRequestDoesNotReadTheLedger(t *testing.T) {
	listed := newID()
	e := setup(t, envConfig{tenants: []string{"contoso"}, machines: 5, tweak: func(f *config.File) {
		f.Tenants[0].Guards = parseGuards(t, strings.ReplaceAll(northwindGuards, "%LISTED%", listed))
	}})
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
	if r, w := reads.Load(), writes.Load(); r != 0 || w != int64(2*len(ms)) {
		t.Errorf("%d requests: %d ledger reads, %d writes; want 0 and %d", len(ms), r, w, 2*len(ms))
	}

	// The same ids again (new messages), half of them naming the listed
	// device: the first write finds the entry, the ledger is read and
	// answers them; no second call, no other answer.
	reads.Store(0)
	var mu sync.Mutex
	published := map[string][]offboard.Result{} // every result sent, stored or dropped as a duplicate
	sub, err := e.nc.Subscribe("mde.offboard.result.contoso", func(m *nats.Msg) {
		var r offboard.Result
		if err := json.Unmarshal(m.Data, &r); err != nil {
			t.Errorf("result is not JSON: %v", err)
			return
		}
		mu.Lock()
		defer mu.Unlock()
		published[r.RequestID] = append(published[r.RequestID], r)
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sub.Unsubscribe() })
	if err := e.nc.Flush(); err != nil {
		t.Fatal(err)
	}
	for i, m := range ms {
		id := fmt.Sprintf("new-%d", i)
		machine := m.ID
		if i%2 == 1 {
			machine = listed
		}
		e.publish("mde.offboard.request.contoso", map[string]any{"requestId": id, "machineId": machine}, id+"-again")
	}
	eventually(t, 10*time.Second, "the repeated requests answered", func() bool { return e.streamMsgs("MDE_OFFBOARD_REQUESTS") == 0 })
	// A result is stored before its request is deleted, but may reach
	// this subscription after the delete is seen.
	eventually(t, 10*time.Second, "each repeated request's answer received", func() bool {
		mu.Lock()
		defer mu.Unlock()
		for i := range ms {
			if len(published[fmt.Sprintf("new-%d", i)]) == 0 {
				return false
			}
		}
		return true
	})
	if r := reads.Load(); r < int64(len(ms)) {
		t.Errorf("%d repeated requests: %d ledger reads, want one each at least", len(ms), r)
	}
	mu.Lock()
	defer mu.Unlock()
	for i, m := range ms {
		id := fmt.Sprintf("new-%d", i)
		if n := e.offboardCalls(e.tenants["contoso"].tenantID, m.ID); n != 1 {
			t.Errorf("%s: %d offboard calls, want 1", id, n)
		}
		if len(published[id]) == 0 {
			t.Errorf("%s sent again: no answer", id)
		}
		for _, r := range published[id] {
			if r.Outcome != offboard.OutcomeCreated || r.MachineID != m.ID {
				t.Errorf("%s answered %s for %s (error %+v); want only the stored answer, created for %s", id, r.Outcome, r.MachineID, r.Error, m.ID)
			}
		}
	}
	if n := e.offboardCalls(e.tenants["contoso"].tenantID, listed); n != 0 {
		t.Errorf("%d offboard calls for the listed device", n)
	}
}

// TestRepeatedFreshIDsGiveQuotaAndBudgetBack: five calls made under a
// 6/1m quota and a 6/1h budget; the five ids sent again as new messages
// each take the one place left, find the id's entry and give place and
// slot back: all five are answered at once, and a new request still gets
// its call.
func TestRepeatedFreshIDsGiveQuotaAndBudgetBack(t *testing.T) {
	e := setup(t, envConfig{tenants: []string{"contoso"}, machines: 6, limits: `["6/1m"]`,
		extra: "    guards:\n      budget: \"6/1h\"\n"})
	results := e.collect("mde.offboard.result.>")
	ms := e.tenants["contoso"].machines
	for i := range 5 {
		id := fmt.Sprintf("q-%d", i)
		if res := e.one(results, "mde.offboard.request.contoso", map[string]any{"requestId": id, "machineId": ms[i].ID}); res.Outcome != offboard.OutcomeCreated {
			t.Fatalf("%s: %s", id, res.Outcome)
		}
	}
	for i := range 5 {
		id := fmt.Sprintf("q-%d", i)
		e.publish("mde.offboard.request.contoso", map[string]any{"requestId": id, "machineId": ms[i].ID}, id+"-again")
	}
	eventually(t, 10*time.Second, "the repeated requests answered", func() bool { return e.streamMsgs("MDE_OFFBOARD_REQUESTS") == 0 })
	if res := e.one(results, "mde.offboard.request.contoso", map[string]any{"requestId": "q-new", "machineId": ms[5].ID}); res.Outcome != offboard.OutcomeCreated {
		t.Fatalf("q-new: %s %+v", res.Outcome, res.Error)
	}
	for i, m := range ms {
		if n := e.offboardCalls(e.tenants["contoso"].tenantID, m.ID); n != 1 {
			t.Errorf("machine %d: %d calls", i, n)
		}
	}
}

// TestFreshRequestClaimsItsIDBeforeItWaits: two new requests for one
// device; the second waits for the first's call (2 s) to end. While it
// waits its id is claimed in the ledger, as a request that is worked on:
// a repeated id, or the answer of a tenant nobody serves, sees as much.
func TestFreshRequestClaimsItsIDBeforeItWaits(t *testing.T) {
	e := setup(t, envConfig{tenants: []string{"contoso"}, machines: 1, sim: mdesim.Options{Latency: 2 * time.Second}})
	results := e.collect("mde.offboard.result.>")
	ledger, err := queue.NewLedger(t.Context(), e.js)
	if err != nil {
		t.Fatal(err)
	}
	m := e.tenants["contoso"].machines[0]
	for _, id := range []string{"wait-a", "wait-b"} {
		e.publish("mde.offboard.request.contoso", map[string]any{"requestId": id, "machineId": m.ID}, id)
	}
	states := func() map[string]string {
		got := map[string]string{}
		for _, id := range []string{"wait-a", "wait-b"} {
			entry, err := ledger.Get(t.Context(), "contoso", id)
			if err != nil {
				t.Fatal(err)
			}
			if entry != nil {
				got[entry.State] = id
			}
		}
		return got
	}
	eventually(t, 10*time.Second, "one request calling, the other claimed while it waits for the device", func() bool {
		s := states()
		return s[queue.StateCalling] != "" && s[queue.StateClaimed] != ""
	})
	eventually(t, 20*time.Second, "both answered", func() bool {
		snap := results.snapshot()
		return len(snap["contoso/wait-a"]) > 0 && len(snap["contoso/wait-b"]) > 0
	})
	if n := len(e.sim.Actions(e.tenants["contoso"].tenantID)); n != 1 {
		t.Errorf("%d actions for one device, want 1", n)
	}
}
