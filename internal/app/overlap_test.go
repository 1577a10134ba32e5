package app

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/contoso-secops/mde-offboard/internal/control"
	"github.com/contoso-secops/mde-offboard/offboard"
)

// TestOverlappingTenantsFilesOneResultEach: replica A serves contoso and
// fabrikam, replica B fabrikam and northwind. Each request of the three
// tenants gets one result, created, while both run; once B stops for
// good, northwind's requests are answered unknown_tenant, once each, and
// fabrikam's are still served.
func TestOverlappingTenantsFilesOneResultEach(t *testing.T) {
	t.Parallel()
	e := setup(t, envConfig{machines: 10, tenants: []string{"contoso", "fabrikam", "northwind"}, noStart: true})
	full := e.opts.Tenants
	e.opts.Tenants = tenantsOnly(full, "contoso", "fabrikam")
	e.opts.PresenceBeat = time.Second
	e.start()
	b := e.startReplicaOf(e.app.NATSURL(), tenantsOnly(full, "fabrikam", "northwind"))
	res := e.collect("mde.offboard.result.>")
	time.Sleep(4 * e.opts.PresenceBeat) // each view current and holding the other's announcement
	for _, tn := range []string{"contoso", "fabrikam", "northwind"} {
		e.offboardEach(tn, tn[:1]+"-", 0, 5)
	}
	res.wait(t, 15, 30*time.Second)
	time.Sleep(time.Second)
	res.wantOneCreatedEach(t)

	if err := b.Stop(context.Background()); err != nil {
		t.Fatal(err)
	}
	late := e.collect("mde.offboard.result.>")
	for i := 5; i < 8; i++ {
		for _, tn := range []string{"fabrikam", "northwind"} {
			id := fmt.Sprintf("%s-%d", tn[:1], i)
			e.publish("mde.offboard.request."+tn, map[string]any{"requestId": id, "machineId": e.tenants[tn].machines[i].ID}, id)
		}
	}
	late.wait(t, 21, 30*time.Second)
	time.Sleep(time.Second)
	for key, rs := range late.snapshot() {
		if !strings.HasSuffix(key, "-5") && !strings.HasSuffix(key, "-6") && !strings.HasSuffix(key, "-7") {
			continue
		}
		want := offboard.OutcomeCreated
		if strings.HasPrefix(key, "northwind/") {
			want = offboard.OutcomeFailed
		}
		if len(rs) != 1 || rs[0].Outcome != want || want == offboard.OutcomeFailed && rs[0].Error.Code != offboard.CodeUnknownTenant {
			t.Errorf("%s: %d results (first %s), want one %s", key, len(rs), rs[0].Outcome, want)
		}
	}
}

// TestTenantRemovedFromEveryReplicaAnswersEachOnce: replica A serves
// contoso only; B and C serve contoso and fabrikam. fabrikam is paused and
// its requests wait; then B and C stop, and B comes back without
// fabrikam. A and B both find fabrikam's consumers stale, and once
// fabrikam is resumed (a pause holds its requests, served or not) each
// waiting request is answered unknown_tenant exactly once, and none is
// called.
func TestTenantRemovedFromEveryReplicaAnswersEachOnce(t *testing.T) {
	t.Parallel()
	e := setup(t, envConfig{machines: 10, noStart: true})
	full := e.opts.Tenants
	e.opts.Tenants = tenantsOnly(full, "contoso")
	e.opts.PresenceBeat = time.Second
	e.start()
	b := e.startReplicaOf(e.app.NATSURL(), full)
	c := e.startReplicaOf(e.app.NATSURL(), full)
	e.control(control.ActionPause, "fabrikam", control.PriorityAll)
	waitPaused(t, "fabrikam", b, c)
	res := e.collect("mde.offboard.result.fabrikam")
	e.offboardEach("fabrikam", "f-", 0, 10)
	time.Sleep(2 * e.opts.PresenceBeat) // waiting, held by the pause
	if n := len(res.snapshot()); n != 0 {
		t.Fatalf("%d results while paused", n)
	}
	for _, a := range []*App{b, c} {
		if err := a.Stop(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	e.startReplica("contoso")
	e.control(control.ActionResume, "fabrikam", control.PriorityAll)
	res.wait(t, 10, 30*time.Second)
	time.Sleep(2 * time.Second) // a second answer would come within a poll or two
	for key, rs := range res.snapshot() {
		if len(rs) != 1 || rs[0].Error == nil || rs[0].Error.Code != offboard.CodeUnknownTenant {
			t.Errorf("%s: %d results (first %s), want one unknown_tenant", key, len(rs), rs[0].Outcome)
		}
	}
	if n := len(e.sim.Actions(e.tenants["fabrikam"].tenantID)); n != 0 {
		t.Errorf("%d fabrikam actions, want none", n)
	}
}
