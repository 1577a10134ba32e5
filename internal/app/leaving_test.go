package app

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/contoso-secops/mde-offboard/internal/queue"
	"github.com/contoso-secops/mde-offboard/offboard"
)

// TestBacklogOfALeavingTenantIsAnswered: B runs an older tenants file
// (contoso only); A, newer, adds fabrikam. fabrikam's requests wait (a
// pause here, lifted once A has left, as a pause holds them even then; a
// quota or budget backlog is the same) and B's unrouted consumer lets
// them go, A serving fabrikam. Then A leaves for good (a rollback by
// scale-down, a canary removed): no replica configures fabrikam any
// more, and B answers the backlog unknown_tenant. Before, it
// never did: its list of consumers of tenants it does not configure was
// made at its start, before fabrikam's existed.
func TestBacklogOfALeavingTenantIsAnswered(t *testing.T) {
	t.Parallel()
	e, a := fabrikamServedByA(t, 5)
	e.control("pause", "fabrikam", "all")
	time.Sleep(time.Second)
	res := e.collect("mde.offboard.result.>")
	e.offboardEach("fabrikam", "f-", 0, 5)
	time.Sleep(2 * time.Second) // B's unrouted consumer lets them go
	if err := a.Stop(context.Background()); err != nil {
		t.Fatal(err)
	}
	e.offboardEach("fabrikam", "g-", 0, 1) // a new one, after A left
	e.control("resume", "fabrikam", "all")
	got := res.wait(t, 6, 30*time.Second)
	for key, rs := range got {
		if len(rs) != 1 || rs[0].Error == nil || rs[0].Error.Code != offboard.CodeUnknownTenant {
			t.Errorf("%s: %d results, first %+v; want one, unknown_tenant", key, len(rs), rs[0].Error)
		}
	}
}

// fabrikamServedByA starts replica B, which serves contoso alone (and
// hosts the NATS server), and replica A, which serves contoso and
// fabrikam, announcing themselves every 300ms.
func fabrikamServedByA(t *testing.T, machines int) (*env, *App) {
	t.Helper()
	e := setup(t, envConfig{machines: machines, noStart: true})
	e.opts.PresenceBeat = 300 * time.Millisecond
	full := e.opts.Tenants
	e.opts.Tenants = tenantsOnly(full, "contoso")
	e.start()
	e.opts.Tenants = full
	return e, e.startReplica("contoso", "fabrikam")
}

// TestPauseHoldsTheBacklogOfALeavingTenant: as above, but fabrikam's
// normal priority stays paused once A has left. B answers fabrikam's new
// bulk request unknown_tenant, and leaves the paused normal backlog in
// the stream, as a pause says (none is failed), until the resume; then
// it answers each once. Before, B answered the paused backlog
// unknown_tenant as soon as no replica served fabrikam, while offboardctl
// status showed it paused.
func TestPauseHoldsTheBacklogOfALeavingTenant(t *testing.T) {
	t.Parallel()
	e, a := fabrikamServedByA(t, 6)
	e.control("pause", "fabrikam", "normal")
	// A takes the pause within a second of its write; a request published
	// sooner may be called before it shows.
	eventually(t, 10*time.Second, "A sees the pause", func() bool {
		return gaugeOf(t, a.reg, "mde_offboard_tenant_paused", map[string]string{"tenant": "fabrikam", "priority": "normal"}) == 1
	})
	res := e.collect("mde.offboard.result.fabrikam")
	e.offboardEach("fabrikam", "f-", 0, 5)
	unrouted, err := e.js.Consumer(e.t.Context(), offboard.StreamRequests, queue.ConsumerUnrouted)
	if err != nil {
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, "B's unrouted consumer lets the requests go", func() bool {
		info, err := unrouted.Info(e.t.Context())
		return err == nil && info.NumPending == 0 && info.NumAckPending == 0
	})
	if err := a.Stop(context.Background()); err != nil {
		t.Fatal(err)
	}
	e.publish("mde.offboard.request.fabrikam.bulk", map[string]any{"requestId": "g-0", "machineId": e.tenants["fabrikam"].machines[5].ID}, "g-0")
	got := res.wait(t, 1, 30*time.Second)
	if rs := got["fabrikam/g-0"]; len(rs) != 1 || rs[0].Error == nil || rs[0].Error.Code != offboard.CodeUnknownTenant {
		t.Fatalf("results %v; want g-0 alone, answered unknown_tenant", got)
	}
	if n := res.resultsOf("fabrikam"); n != 1 {
		t.Errorf("%d of fabrikam's requests answered while its normal priority is paused; want the bulk one alone", n)
	}
	resumed := time.Now() // before the resume is written
	e.control("resume", "fabrikam", "normal")
	got = res.wait(t, 6, 30*time.Second)
	for i := range 5 {
		rs := got[fmt.Sprintf("fabrikam/f-%d", i)]
		switch {
		case len(rs) != 1 || rs[0].Error == nil || rs[0].Error.Code != offboard.CodeUnknownTenant:
			t.Errorf("f-%d: %d results, first %+v; want one, unknown_tenant", i, len(rs), rs)
		case rs[0].CompletedAt.Before(resumed):
			t.Errorf("f-%d answered at %s, before the resume at %s", i, rs[0].CompletedAt, resumed)
		}
	}
}
