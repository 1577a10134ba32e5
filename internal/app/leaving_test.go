package app

import (
	"context"
	"testing"
	"time"

	"github.com/contoso-secops/mde-offboard/offboard"
)

// TestBacklogOfALeavingTenantIsAnswered: B runs an older tenants file
// (contoso only); A, newer, adds fabrikam. fabrikam's requests wait (a
// pause here; a quota or budget backlog is the same) and B's unrouted
// consumer lets them go, A serving fabrikam. Then A leaves for good (a
// rollback by scale-down, a canary removed): no replica configures
// fabrikam any more, and B answers the backlog unknown_tenant. Before, it
// never did: its list of consumers of tenants it does not configure was
// made at its start, before fabrikam's existed.
func TestBacklogOfALeavingTenantIsAnswered(t *testing.T) {
	t.Parallel()
	e := setup(t, envConfig{machines: 5, noStart: true})
	e.opts.PresenceBeat = 300 * time.Millisecond
	full := e.opts.Tenants
	e.opts.Tenants = tenantsOnly(full, "contoso")
	e.start() // B: contoso only (it hosts the NATS server)
	e.opts.Tenants = full
	a := e.startReplica("contoso", "fabrikam")
	e.control("pause", "fabrikam", "all")
	time.Sleep(time.Second)
	res := e.collect("mde.offboard.result.>")
	e.offboardEach("fabrikam", "f-", 0, 5)
	time.Sleep(2 * time.Second) // B's unrouted consumer lets them go
	if err := a.Stop(context.Background()); err != nil {
		t.Fatal(err)
	}
	e.offboardEach("fabrikam", "g-", 0, 1) // a new one, after A left
	got := res.wait(t, 6, 30*time.Second)
	for key, rs := range got {
		if len(rs) != 1 || rs[0].Error == nil || rs[0].Error.Code != offboard.CodeUnknownTenant {
			t.Errorf("%s: %d results, first %+v; want one, unknown_tenant", key, len(rs), rs[0].Error)
		}
	}
}
