package worker

import (
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/contoso-secops/mde-offboard/internal/limiter"
	"github.com/contoso-secops/mde-offboard/offboard"
)

// TestUnreadableBudgetEntryCountsItsHeldRequests: the tenant's budget
// journal holds an entry that cannot be read (written by another
// version), so no slot is handed out until the slots it may hold have
// left the budget's window, though the budget counts none of them: the
// three requests waiting in the stream are held by the budget, and the
// held gauge says so. Before, it said 0, the budget having slots left by
// its count, while nothing went out.
func TestUnreadableBudgetEntryCountsItsHeldRequests(t *testing.T) {
	t.Parallel()
	var shared *limiter.Shared
	e := setupLoopOpts(t, `["100/1m"]`, "    guards:\n      budget: \"50/1h\"\n", RetryPolicy{}, func(o *Options) {
		subjects := o.Settings.Subjects
		if _, err := o.JS.Publish(t.Context(), subjects.Budget("contoso"), []byte(`{"w":`)); err != nil {
			t.Fatal(err)
		}
		for _, id := range []string{"r-1", "r-2", "r-3"} {
			if _, err := o.JS.Publish(t.Context(), subjects.Request("contoso", offboard.Normal),
				[]byte(`{"requestId":"`+id+`","machineId":"`+loopMachine+`"}`)); err != nil {
				t.Fatal(err)
			}
		}
		shared, _ = followedBudget(t, o, "worker", nil)
		o.Budget, o.BudgetHorizon = shared, 24*time.Hour
	})
	held := e.w.m.HeldRequests.WithLabelValues("contoso", HeldBudget)
	deadline := time.Now().Add(10 * time.Second)
	for testutil.ToFloat64(held) != 3 {
		if time.Now().After(deadline) {
			t.Fatalf("mde_offboard_held_requests{reason=budget} = %v, want 3: the unreadable entry holds the tenant's requests (budget left %v)",
				testutil.ToFloat64(held), testutil.ToFloat64(e.w.m.BudgetRemaining.WithLabelValues("contoso")))
		}
		time.Sleep(20 * time.Millisecond)
	}
	select {
	case r := <-e.results:
		t.Fatalf("result %s %s while the unreadable entry holds the budget", r.RequestID, r.Outcome)
	case <-time.After(200 * time.Millisecond):
	}
	if n := len(e.sim.Actions(loopTenantID)); n != 0 {
		t.Fatalf("%d actions while the unreadable entry holds the budget", n)
	}
}
