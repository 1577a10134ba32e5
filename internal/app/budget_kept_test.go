package app

import (
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/contoso-secops/mde-offboard/offboard"
)

// TestBudgetOverrideWithinTheJournalKept: setup never shortens the budget
// journal's stream, so a worker restarted with a shorter --budget-history
// (a flag lowered, a rolling update) runs over a stream that keeps more.
// offboardctl budget reads the longest window it may set from that
// stream, and status shows the override in force; the worker counted
// from its flag alone and ignored the override: with 3h, a 1/1h budget
// let both requests create their action. The worker counts as far back
// as the stream keeps its entries: one created, the other held.
func TestBudgetOverrideWithinTheJournalKept(t *testing.T) {
	t.Parallel()
	core, logs := observer.New(zap.WarnLevel)
	e := setup(t, envConfig{tenants: []string{"contoso"}, machines: 2, logger: zap.New(core), noStart: true})
	e.opts.StatsEvery = 100 * time.Millisecond
	e.start() // the budget journal kept 48h, the default
	e.stop()
	e.opts.Queue.BudgetHistory = 3 * time.Hour // a window of about an hour less the margin
	e.start()
	stream, err := e.js.Stream(t.Context(), offboard.StreamBudget)
	if err != nil {
		t.Fatal(err)
	}
	if keep := stream.CachedInfo().Config.MaxAge; keep != 48*time.Hour {
		t.Fatalf("the budget journal keeps %v, want the 48h kept", keep)
	}
	res := e.collect("mde.offboard.result.>")
	e.setBudget("contoso", "1/1h")
	// A control has a second to take effect: the requests come once the
	// worker shows the budget, or once it is plainly ignored.
	eventually(t, 10*time.Second, "the budget shown or ignored", func() bool {
		return gaugeOf(t, e.reg, "mde_offboard_budget_remaining", map[string]string{"tenant": "contoso"}) == 1 ||
			logs.FilterMessageSnippet("budget override ignored").Len() > 0
	})
	e.offboardEach("contoso", "c", 0, 2)
	eventually(t, 20*time.Second, "one created and the other held, or both answered", func() bool {
		return res.resultsOf("contoso") == 2 || res.resultsOf("contoso") == 1 &&
			gaugeOf(t, e.reg, "mde_offboard_held_requests", map[string]string{"tenant": "contoso", "reason": "budget"}) == 1
	})
	if n := res.createdOf("contoso"); n != 1 {
		t.Errorf("%d created under the 1/1h override offboardctl accepted and status shows, want 1", n)
	}
}
