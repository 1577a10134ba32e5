package app

import (
	"testing"
	"time"

	"github.com/contoso-secops/mde-offboard/offboard"
)

// TestReplicaWhoseBudgetJournalWasMadeAnewLeavesItsTenants: replica A
// runs when the budget journal is deleted (and made anew by the next
// replica's setup): A takes no budget slot, so makes no call of a tenant
// with a budget, until it is restarted. Replica B, started since, can:
// it takes every tenant both serve, and their requests are answered.
// Before, A kept its share of the tenants, whose requests came back to
// it until its restart, B at hand.
func TestReplicaWhoseBudgetJournalWasMadeAnewLeavesItsTenants(t *testing.T) {
	t.Parallel()
	names := numberedTenants(8)
	e := setup(t, envConfig{tenants: names, machines: 2, extra: "    guards:\n      budget: \"10/1h\"\n", noStart: true})
	e.opts.PresenceBeat = 300 * time.Millisecond
	e.opts.ReplicaID = "replica-a"
	e.start()
	e.waitCanCall("replica-a")
	a := e.app
	if err := e.js.DeleteStream(t.Context(), offboard.StreamBudget); err != nil {
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, "A found its budget journal deleted", func() bool { return a.budget.Healthy() != nil })
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
		t.Errorf("A, which takes no budget slot until it is restarted, works %v", onA)
	}
	if onB := assignedTenants(t, b.opts.Registry); len(onB) != len(names) {
		t.Errorf("B works %v, want every tenant", onB)
	}
}
