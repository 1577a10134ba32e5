package app

import (
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/contoso-secops/mde-offboard/internal/mde"
	"github.com/contoso-secops/mde-offboard/internal/mde/mdesim"
	"github.com/contoso-secops/mde-offboard/internal/queue"
	"github.com/contoso-secops/mde-offboard/offboard"
)

// TestRepeatAfterATakeOverIsNotSent: a request's call is throttled (429,
// Retry-After 2 s), and while this worker waits out the pause another
// takes the request up (as it does when this one is frozen past its
// presence's lease): it writes the request's ledger entry and answers it.
// This worker does not send its call again: it finds the entry changed,
// and the request is answered from the ledger. One offboard call (the
// 429), no action, one result.
func TestRepeatAfterATakeOverIsNotSent(t *testing.T) {
	t.Parallel()
	var (
		ep   atomic.Pointer[env]
		once sync.Once
	)
	answer := []byte(`{"requestId":"r1","tenant":"contoso","outcome":"failed","attempt":1,"error":{"code":"api_error","message":"answered by another worker"}}`)
	e := setup(t, envConfig{tenants: []string{"contoso"}, machines: 1, noStart: true,
		sim: mdesim.Options{OnCall: func(c mdesim.Call) {
			if c.API != mde.APIOffboard || c.Status != http.StatusTooManyRequests {
				return
			}
			once.Do(func() {
				e := ep.Load()
				ledger, err := queue.NewLedger(t.Context(), e.js)
				if err != nil {
					t.Error(err)
					return
				}
				entry, err := ledger.Get(t.Context(), "contoso", "r1")
				if err != nil || entry == nil || entry.State != queue.StateCalling {
					t.Errorf("ledger entry of r1 during its 429: %+v, %v; want a calling entry", entry, err)
					return
				}
				if err := ledger.Finish(t.Context(), "contoso", "r1", entry, entry.Seq, answer); err != nil {
					t.Error(err)
				}
			})
		}}})
	e.start()
	ep.Store(e)
	tt := e.tenants["contoso"]
	e.sim.InjectStatus(tt.tenantID, mde.APIOffboard, http.StatusTooManyRequests, "", "", 1, 2*time.Second)
	res := e.collect("mde.offboard.result.>")
	e.publish("mde.offboard.request.contoso", map[string]any{"requestId": "r1", "machineId": tt.machines[0].ID}, "contoso:r1")
	r := res.wait(t, 1, 30*time.Second)["contoso/r1"]
	eventually(t, 20*time.Second, "request stream empty", func() bool { return e.streamMsgs(offboard.StreamRequests) == 0 })
	if len(r) != 1 || r[0].Error == nil || r[0].Error.Message != "answered by another worker" {
		for _, x := range r {
			t.Errorf("result of r1: %s %+v", x.Outcome, x.Error)
		}
		t.Errorf("%d results of r1, want the other worker's, once", len(r))
	}
	if n := e.offboardCalls(tt.tenantID, tt.machines[0].ID); n != 1 {
		t.Errorf("%d offboard calls, want 1 (the 429): the repeat went out after another worker took the request up", n)
	}
	if n := len(e.sim.Actions(tt.tenantID)); n != 0 {
		t.Errorf("%d actions, want none", n)
	}
}
