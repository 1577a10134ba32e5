package app

import (
	"context"
	"testing"
	"time"
)

// TestRestartOfTheOnlyReplicaOfATenant: pod-0 serves contoso only, pod-1
// contoso and fabrikam (a rolling update that adds fabrikam has reached
// pod-1 alone). fabrikam's requests wait, held by a spent budget (a pause
// would hold them on pod-0 too, served or not), when pod-1 restarts under
// its name. pod-0 leaves them to it: each gets one result, created, once
// fabrikam's budget is raised. Before, pod-0 took fabrikam for served by
// nobody the moment pod-1 withdrew its announcement at its clean stop,
// and answered every waiting request unknown_tenant.
func TestRestartOfTheOnlyReplicaOfATenant(t *testing.T) {
	t.Parallel()
	e := setup(t, envConfig{machines: 10, noStart: true})
	full := e.opts.Tenants
	e.opts.Tenants = tenantsOnly(full, "contoso")
	e.opts.ReplicaID = "pod-0"
	e.opts.PresenceBeat = 2 * time.Second // the restart, one beat, fits in three on a loaded machine
	e.start()
	e.opts.ReplicaID = "pod-1"
	e.setBudget("fabrikam", "1/1h")
	b := e.startReplicaOf(e.app.NATSURL(), full)
	res := e.collect("mde.offboard.result.fabrikam")
	e.offboardEach("fabrikam", "f-", 0, 10)
	res.wait(t, 1, 30*time.Second)      // the budget's one; the others wait
	time.Sleep(2 * e.opts.PresenceBeat) // each view current, fabrikam's consumers found by pod-0
	if n := len(res.snapshot()); n != 1 {
		t.Fatalf("%d results while the budget holds, want the 1 it let go", n)
	}
	if err := b.Stop(context.Background()); err != nil {
		t.Fatal(err)
	}
	time.Sleep(e.opts.PresenceBeat)         // a pod's restart takes seconds
	e.startReplicaOf(e.app.NATSURL(), full) // pod-1 again
	time.Sleep(e.opts.PresenceBeat)         // an answer of pod-0 would come within a poll
	if n := len(res.snapshot()); n != 1 {
		t.Fatalf("%d results across pod-1's restart, want the 1 the budget let go", n)
	}
	e.setBudget("fabrikam", "100/1h")
	res.wait(t, 10, 30*time.Second)
	time.Sleep(time.Second) // a second answer would come within a poll or two
	res.wantOneCreatedEach(t)
}

// waitPaused waits until each app holds both priorities of tenant paused:
// a request published sooner may be called before the pause reaches it.
func waitPaused(t *testing.T, tenant string, apps ...*App) {
	t.Helper()
	for _, a := range apps {
		eventually(t, 10*time.Second, tenant+" paused on a replica", func() bool {
			return gaugeOf(t, a.reg, "mde_offboard_tenant_paused", map[string]string{"tenant": tenant}) == 2
		})
	}
}
