package app

import (
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/contoso-secops/mde-offboard/internal/config"
	"github.com/contoso-secops/mde-offboard/internal/mde/mdesim"
	"github.com/contoso-secops/mde-offboard/offboard"
)

// TestRevokedTokenRenewedOnceForABurst: the tenant's token is revoked
// while many of its requests are under way, each between the read of its
// device (for the guards) and its offboard. Every offboard is refused
// (401); the worker gets one new token for all of them, not one each, and
// every request is created and answered once.
func TestRevokedTokenRenewedOnceForABurst(t *testing.T) {
	t.Parallel()
	const requests = 24
	var onCall atomic.Pointer[func(mdesim.Call)]
	e := setup(t, envConfig{
		machines: requests, tenants: []string{"contoso"},
		sim: mdesim.Options{
			Latency: 200 * time.Millisecond, // the reads overlap
			OnCall: func(c mdesim.Call) {
				if f := onCall.Load(); f != nil {
					(*f)(c)
				}
			},
		},
		extra: "    guards:\n      protect:\n        machineTags: [\"DoNotOffboard\"]\n",
		tweak: func(f *config.File) { f.Tenants[0].MaxInFlight = requests },
	})
	tt := e.tenants["contoso"]
	var once sync.Once
	var before atomic.Int64
	revoke := func(c mdesim.Call) {
		if c.API == mdesim.APIMachines && c.Status == 200 {
			once.Do(func() {
				before.Store(int64(e.sim.TokenRequests(tt.tenantID)))
				e.sim.RevokeTokens(tt.tenantID)
			})
		}
	}
	onCall.Store(&revoke)
	c := e.collect("mde.offboard.result.>")
	for i, m := range tt.machines {
		id := fmt.Sprintf("revoked-%02d", i)
		e.publish("mde.offboard.request.contoso", map[string]any{"requestId": id, "machineId": m.ID}, id)
	}
	got := c.wait(t, requests, 60*time.Second)
	refused := 0
	for _, call := range e.sim.Calls() {
		if call.Status == 401 {
			refused++
		}
	}
	if refused < 2 {
		t.Fatalf("%d calls refused with 401, want several: the test shows nothing", refused)
	}
	if n := int64(e.sim.TokenRequests(tt.tenantID)) - before.Load(); n < 1 || n > 2 {
		t.Errorf("%d token requests after the revocation, for %d calls refused, want 1 or 2", n, refused)
	}
	for key, rs := range got {
		if len(rs) != 1 || rs[0].Outcome != offboard.OutcomeCreated {
			t.Errorf("%s: %d results, first %+v; want one, created", key, len(rs), rs[0])
		}
	}
	e.oneActionEach("contoso", requests)
	t.Logf("%d calls refused with 401", refused)
}
