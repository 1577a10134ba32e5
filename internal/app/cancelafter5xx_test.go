package app

import (
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/contoso-secops/mde-offboard/internal/campaign"
	"github.com/contoso-secops/mde-offboard/internal/mde"
	"github.com/contoso-secops/mde-offboard/internal/mde/mdesim"
	"github.com/contoso-secops/mde-offboard/internal/worker"
	"github.com/contoso-secops/mde-offboard/offboard"
)

// TestCancelDuringTheBackoffAfterA5xx: a campaign row's offboard call
// was answered 500, which may or may not have acted, and the operator
// cancelled the campaign during the backoff before its repeat. The repeat
// went out after the cancel had reached the worker, and offboarded the
// device of a cancelled campaign. No call goes out after the cancel now:
// the request is taken again to look for the action the first call may
// have made, and with none shown by the time an action takes to show,
// it is answered cancelled.
func TestCancelDuringTheBackoffAfterA5xx(t *testing.T) {
	t.Parallel()
	var (
		ep       atomic.Pointer[env]
		once     sync.Once
		cancelAt atomic.Pointer[time.Time]
	)
	e := setup(t, envConfig{tenants: []string{"contoso"}, machines: 1, ackWait: 2 * time.Second, noStart: true,
		sim: mdesim.Options{OnCall: func(c mdesim.Call) {
			if c.API == mde.APIOffboard && c.Status == http.StatusInternalServerError {
				once.Do(func() {
					e := ep.Load()
					kv, err := campaign.ControlBucket(e.t.Context(), e.js)
					if err == nil {
						err = campaign.SetMark(e.t.Context(), kv, "contoso", "wave1", campaign.Mark{Cancelled: true, By: "op", At: time.Now()})
					}
					if err != nil {
						e.t.Error(err)
					}
					time.Sleep(300 * time.Millisecond) // the cancel reaches the worker
					now := time.Now()
					cancelAt.Store(&now)
				})
			}
		}}})
	// The 500 is answered once the cancel reached the worker; the repeat
	// follows 50-100 ms later. An action shows within a second: by the
	// request's next delivery (5 s) none can still be coming.
	e.opts.Retry = worker.RetryPolicy{Base: 100 * time.Millisecond, Max: time.Second}
	e.opts.ActionShowsWithin = time.Second
	e.start()
	ep.Store(e)
	tt := e.tenants["contoso"]
	e.sim.InjectStatus(tt.tenantID, mde.APIOffboard, http.StatusInternalServerError, "", "", 1, 0)
	c := e.collect("mde.offboard.result.>")
	id := campaign.RequestID("wave1", 1)
	e.publish("mde.offboard.request.contoso.bulk", map[string]any{"requestId": id, "machineId": tt.machines[0].ID, "source": campaign.Source("wave1")}, "contoso:"+id)
	r := c.wait(t, 1, 30*time.Second)["contoso/"+id][0]
	if r.Error == nil || r.Error.Code != offboard.CodeCancelled {
		t.Errorf("result %s %+v, want cancelled", r.Outcome, r.Error)
	}
	if at := cancelAt.Load(); at == nil {
		t.Fatal("no 500 answered")
	} else if calls := e.offboardCallsSince("contoso", *at); len(calls) != 0 {
		t.Errorf("%d offboard calls after the cancel reached the worker, want none", len(calls))
	}
	if n := len(e.sim.Actions(tt.tenantID)); n != 0 {
		t.Errorf("%d actions for a cancelled campaign's row whose only call failed", n)
	}
}
