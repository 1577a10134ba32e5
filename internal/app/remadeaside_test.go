package app

import (
	"testing"
	"time"

	"github.com/contoso-secops/mde-offboard/internal/limiter"
	"github.com/contoso-secops/mde-offboard/offboard"
)

// TestReplicaWhoseJournalWasMadeAnewLeavesItsTenants: replica A runs
// when the quota journal is deleted (and made anew by the next replica's
// setup): A makes no call until it is restarted. Replica B, started
// since, can call: it takes every tenant both serve, and their requests
// are answered. Before, A kept its share of the tenants, whose requests
// waited for A's restart, B at hand.
func TestReplicaWhoseJournalWasMadeAnewLeavesItsTenants(t *testing.T) {
	t.Parallel()
	replicaWhoseJournalWasMadeAnew(t, "", offboard.StreamQuota, func(a *App) *limiter.Shared { return a.shared })
}

// TestReplicaWhoseBudgetJournalWasMadeAnewLeavesItsTenants: the same for
// the budget journal: A takes no budget slot, so makes no call of a
// tenant with a budget, until it is restarted. Before, A kept its share
// of the tenants, whose requests came back to it until its restart, B at
// hand.
func TestReplicaWhoseBudgetJournalWasMadeAnewLeavesItsTenants(t *testing.T) {
	t.Parallel()
	replicaWhoseJournalWasMadeAnew(t, "    guards:\n      budget: \"10/1h\"\n", offboard.StreamBudget, func(a *App) *limiter.Shared { return a.budget })
}

// replicaWhoseJournalWasMadeAnew deletes stream, a journal of replica A
// (journal), under it, starts replica B, and checks that B works every
// tenant and answers their requests.
func replicaWhoseJournalWasMadeAnew(t *testing.T, extra, stream string, journal func(*App) *limiter.Shared) {
	names := numberedTenants(8)
	e := setup(t, envConfig{tenants: names, machines: 2, extra: extra, noStart: true})
	e.opts.PresenceBeat = 300 * time.Millisecond
	e.opts.ReplicaID = "replica-a"
	e.start()
	e.waitCanCall("replica-a")
	a := e.app
	if err := e.js.DeleteStream(t.Context(), stream); err != nil {
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, "A found "+stream+" deleted", func() bool { return journal(a).Healthy() != nil })
	e.opts.ReplicaID = "replica-b"
	b := e.startReplica(names...)
	e.waitCanCall("replica-b")
	res := e.collect("mde.offboard.result.>")
	for _, n := range names {
		e.offboardEach(n, n+"-", 0, 1)
	}
	res.wait(t, len(names), 20*time.Second)
	res.wantOneCreatedEach(t)
	if onA := assignedTenants(t, e.reg); len(onA) > 0 {
		t.Errorf("A, which makes no call until it is restarted, works %v", onA)
	}
	if onB := assignedTenants(t, b.opts.Registry); len(onB) != len(names) {
		t.Errorf("B works %v, want every tenant", onB)
	}
}
