package app

import (
	"context"
	"testing"
	"time"

	"github.com/contoso-secops/mde-offboard/internal/queue"
	"github.com/contoso-secops/mde-offboard/offboard"
)

// TestLeavingTenantsRequestClaimedAtTheStopIsAnswered: A alone serves
// fabrikam, and stops for good (fabrikam dropped from the tenants files)
// while f-1 waits for its device behind f-0's call: f-1's id holds A's
// claim (no call of it went out), f-0's its "calling" entry. Once
// fabrikam is served by nobody, B answers f-1 unknown_tenant as it does
// the rest of the backlog, and leaves f-0, whose call may have acted,
// for later. Before, B took the claim for a call that might be under way
// and left f-1 in the stream for the whole calling lease (2 h), saying
// so every minute.
func TestLeavingTenantsRequestClaimedAtTheStopIsAnswered(t *testing.T) {
	t.Parallel()
	e := setup(t, envConfig{machines: 1, noStart: true})
	e.opts.PresenceBeat = 300 * time.Millisecond
	full := e.opts.Tenants
	e.opts.Tenants = tenantsOnly(full, "contoso")
	e.start()
	e.opts.Tenants = full
	e.opts.ShutdownTimeout = 500 * time.Millisecond // the call held under way is cancelled
	a := e.startReplica("contoso", "fabrikam")

	fab := e.tenants["fabrikam"]
	device := fab.machines[0].ID
	release := e.sim.HoldAnswers(fab.tenantID, device)
	defer release()
	res := e.collect("mde.offboard.result.fabrikam")
	e.publish("mde.offboard.request.fabrikam", map[string]any{"requestId": "f-0", "machineId": device}, "f-0")
	eventually(t, 10*time.Second, "f-0's call under way", func() bool { return e.offboardCalls(fab.tenantID, device) > 0 })
	e.publish("mde.offboard.request.fabrikam", map[string]any{"requestId": "f-1", "machineId": device}, "f-1")
	ledger, err := queue.NewLedger(t.Context(), e.js)
	if err != nil {
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, "f-1 claimed, waiting for its device", func() bool {
		entry, err := ledger.Get(t.Context(), "fabrikam", "f-1")
		return err == nil && entry != nil && entry.State == queue.StateClaimed
	})
	if err := a.Stop(context.Background()); err != nil {
		t.Fatal(err)
	}
	got := res.wait(t, 1, 20*time.Second)
	if rs := got["fabrikam/f-1"]; len(rs) != 1 || rs[0].Error == nil || rs[0].Error.Code != offboard.CodeUnknownTenant {
		t.Errorf("f-1: %+v; want one result, unknown_tenant", rs)
	}
	if rs := got["fabrikam/f-0"]; len(rs) != 0 {
		t.Errorf("f-0 answered %+v while its call may have acted", rs)
	}
	if n := e.offboardCalls(fab.tenantID, device); n != 1 {
		t.Errorf("%d offboard calls of the device; want f-0's alone", n)
	}
}
