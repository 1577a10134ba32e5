package worker

import (
	"fmt"
	"testing"
	"time"

	"github.com/jonboulle/clockwork"

	"github.com/contoso-secops/mde-offboard/internal/control"
	"github.com/contoso-secops/mde-offboard/internal/limiter"
	"github.com/contoso-secops/mde-offboard/internal/mde/mdesim"
	"github.com/contoso-secops/mde-offboard/internal/queue"
	"github.com/contoso-secops/mde-offboard/offboard"
)

// TestBudgetClearedWhileItsJournalHolds: the budget journal holds the
// tenant (not read yet, its feed cut off, an entry it cannot read), so a tenant with a budget
// takes no slot and its requests wait. The operator clears the tenant's
// budget override, and the tenants file has none: no budget is in force,
// no slot is needed, and the requests go on, those waiting in the stream
// and one fetched that waits in the worker. Before, both waited on for a
// slot of the budget journal, which they no longer needed, until the
// journal came back (after a restart, if it was made anew).
func TestBudgetClearedWhileItsJournalHolds(t *testing.T) {
	t.Parallel()
	for name, unreadable := range map[string]bool{
		"in the stream":       false, // never followed: the journal is never read
		"an unreadable entry": true,
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			e, store, _ := budgetOverrideEnv(t, "5/1h", false, unreadable)
			e.publish(t, "r-1")
			select {
			case r := <-e.results:
				t.Fatalf("result %s %s while the budget journal holds the tenant", r.RequestID, r.Outcome)
			case <-time.After(500 * time.Millisecond):
			}
			clearBudget(t, store)
			e.wantCreated(t, "r-1")
		})
	}
	t.Run("in the worker", func(t *testing.T) {
		t.Parallel()
		// Three requests fetched together under a budget of 2, once the
		// pause they were published under is lifted: the third waits in
		// the worker for a slot.
		e, store, shared := budgetOverrideEnv(t, "2/1h", true, false)
		ids := []string{"r-1", "r-2", "r-3"}
		for i, id := range ids {
			machine := fmt.Sprintf("%040x", i+1)
			e.sim.AddMachine(loopTenantID, mdesim.Machine{ID: machine, ComputerDNSName: id + ".contoso.local",
				OSPlatform: "Windows11", HealthStatus: "Active", LastSeen: time.Now().Add(-time.Hour)})
			e.publishFor(t, id, machine)
		}
		if _, err := store.Apply(t.Context(), control.Change{Tenant: "contoso", Action: control.ActionResume, By: "test"}); err != nil {
			t.Fatal(err)
		}
		seen := map[string]bool{}
		for range 2 {
			r := e.nextResult(t, "one of the first two")
			seen[r.RequestID] = true
		}
		deadline := time.Now().Add(10 * time.Second)
		for e.w.tenants["contoso"].budget.waitingOf(offboard.Normal).Load() != 1 {
			if time.Now().After(deadline) {
				t.Fatal("no request waits in the worker for a slot")
			}
			time.Sleep(10 * time.Millisecond)
		}
		shared.Hold() // the feed cut off: no slot until the journal is looked at
		clearBudget(t, store)
		r := e.nextResult(t, "the third request")
		if seen[r.RequestID] || r.Outcome != offboard.OutcomeCreated {
			t.Fatalf("result %s %s, want the third request created", r.RequestID, r.Outcome)
		}
	})
}

// budgetOverrideEnv starts a worker whose tenant contoso has no budget in
// its tenants file and the override budget; with follow, its budget
// journal is read and the tenant paused, with unreadable, read after an
// entry it cannot read, else the journal is never read.
func budgetOverrideEnv(t *testing.T, budget string, follow, unreadable bool) (*loopEnv, *control.Store, *limiter.Shared) {
	t.Helper()
	var watcher *control.Watcher
	var store *control.Store
	var shared *limiter.Shared
	e := setupLoopOpts(t, `["100/1m"]`, "", RetryPolicy{}, func(o *Options) {
		var err error
		if store, err = control.Open(t.Context(), o.JS, offboard.Subjects{}); err != nil {
			t.Fatal(err)
		}
		changes := []control.Change{{Tenant: "contoso", Action: control.ActionBudget, Value: budget, By: "test"}}
		if follow {
			changes = append(changes, control.Change{Tenant: "contoso", Action: control.ActionPause, By: "test"})
		}
		for _, c := range changes {
			if _, err := store.Apply(t.Context(), c); err != nil {
				t.Fatal(err)
			}
		}
		followControls(t, &watcher)(o)
		bj, err := queue.NewBudgetJournal(t.Context(), o.JS, o.Settings.Subjects)
		if err != nil {
			t.Fatal(err)
		}
		shared = limiter.NewShared(limiter.SharedOptions{
			Journal: bj, Clock: o.Clock, Margin: time.Second, Lease: queue.BudgetLease,
			Wall: clockwork.NewRealClock(), // the server's stamps run on real time
		})
		if unreadable {
			if _, err := o.JS.Publish(t.Context(), o.Settings.Subjects.Budget("contoso"), []byte(`{"w":`)); err != nil {
				t.Fatal(err)
			}
		}
		shared.Tenant("contoso") // served: the feed applies its entries
		if follow || unreadable {
			followJournal(t, o.JS, o.Settings.Subjects, shared, true)
		}
		o.Budget, o.BudgetHorizon = shared, 24*time.Hour
	})
	return e, store, shared
}

// clearBudget clears contoso's budget override, as offboardctl budget
// --clear does.
func clearBudget(t *testing.T, store *control.Store) {
	t.Helper()
	if _, err := store.Apply(t.Context(), control.Change{Tenant: "contoso", Action: control.ActionBudgetClear, By: "test"}); err != nil {
		t.Fatal(err)
	}
}
