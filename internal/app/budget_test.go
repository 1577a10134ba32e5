package app

import (
	"net/http"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/contoso-secops/mde-offboard/internal/control"
	"github.com/contoso-secops/mde-offboard/internal/mde/mdesim"
	"github.com/contoso-secops/mde-offboard/internal/queue"
	"github.com/contoso-secops/mde-offboard/offboard"
)

// setBudget overrides a tenant's budget, as offboardctl budget does.
func (e *env) setBudget(tenant, value string) {
	e.t.Helper()
	store, err := control.Open(e.t.Context(), e.js, offboard.Subjects{})
	if err != nil {
		e.t.Fatal(err)
	}
	if _, err := store.Apply(e.t.Context(), control.Change{Tenant: tenant, Action: control.ActionBudget, Value: value, By: "test", Reason: "test"}); err != nil {
		e.t.Fatal(err)
	}
}

// createdOf counts a tenant's results with outcome created.
func (c *collector) createdOf(tenant string) int {
	n := 0
	for key, rs := range c.snapshot() {
		if len(key) > len(tenant) && key[:len(tenant)+1] == tenant+"/" && rs[len(rs)-1].Outcome == offboard.OutcomeCreated {
			n++
		}
	}
	return n
}

// TestBudgetHoldsUntilRaised: a budget of 40 with 60 requests creates
// exactly 40 actions and holds the other 20 in the stream (no result, no
// call, the held and budget-left gauges say so) until an operator raises
// it; then all 60 are created.
func TestBudgetHoldsUntilRaised(t *testing.T) { testBudgetHold(t, 1) }

// TestBudgetHoldsAcrossReplicas is TestBudgetHoldsUntilRaised with three
// replicas sharing the budget.
func TestBudgetHoldsAcrossReplicas(t *testing.T) { testBudgetHold(t, 3) }

func testBudgetHold(t *testing.T, replicas int) {
	t.Parallel()
	e := setup(t, envConfig{
		limits:  `["20/250ms"]`,
		tenants: []string{"contoso"}, machines: 60,
		extra: "    guards:\n      budget: \"40/1h\"\n", noStart: true,
	})
	// One replica works the tenant; the others see its budget spent at
	// their next stats refresh.
	e.opts.StatsEvery = 250 * time.Millisecond
	e.start()
	regs := []*prometheus.Registry{e.reg}
	for range replicas - 1 {
		_, reg := e.replica()
		regs = append(regs, reg)
	}
	res := e.collect("mde.offboard.result.>")
	e.offboardEach("contoso", "c", 0, 60)
	eventually(t, 20*time.Second, "40 actions created", func() bool { return res.createdOf("contoso") >= 40 })
	tenant := map[string]string{"tenant": "contoso"}
	eventually(t, 10*time.Second, "the budget shows spent, the rest held", func() bool {
		held := 0.0
		for _, reg := range regs {
			if gaugeOf(t, reg, "mde_offboard_budget_remaining", tenant) != 0 {
				return false
			}
			held = max(held, gaugeOf(t, reg, "mde_offboard_held_requests", map[string]string{"tenant": "contoso", "reason": "budget"}))
		}
		return held > 0 && (replicas > 1 || held == 20)
	})
	if n := res.resultsOf("contoso"); n != 40 {
		t.Fatalf("%d results while the budget is spent, want 40 (the rest wait, none failed)", n)
	}
	if n := len(e.sim.Actions(e.tenants["contoso"].tenantID)); n != 40 {
		t.Fatalf("%d actions created under a budget of 40", n)
	}
	if n := len(e.offboardCallsSince("contoso", time.Time{})); n != 40 {
		t.Fatalf("%d offboard calls under a budget of 40", n)
	}

	raised := time.Now()
	e.setBudget("contoso", "100/1h")
	res.wait(t, 60, 20*time.Second)
	if first := e.offboardCallsSince("contoso", raised); len(first) == 0 || first[0].Sub(raised) > time.Second {
		t.Errorf("the first held request's call came %v after the raise, want within a second", first)
	}
	if n := res.createdOf("contoso"); n != 60 {
		t.Errorf("%d created after the raise, want 60", n)
	}
	e.oneActionEach("contoso", 60)
	// Every replica's gauge counts the others' creations too, by its next
	// refresh (15 s).
	eventually(t, 20*time.Second, "budget left 40 of 100", func() bool {
		return gaugeOf(t, e.reg, "mde_offboard_budget_remaining", tenant) == 40
	})
}

// TestBudgetHistoryShorterThanTheLease: a --budget-history that does not
// even cover a slot's lease leaves the journal no window it can count, so
// the worker ignores every override, as offboardctl budget and status
// say it does, rather than count one in this process only (a restart or
// another replica would forget what it counted).
func TestBudgetHistoryShorterThanTheLease(t *testing.T) {
	t.Parallel()
	for _, history := range []time.Duration{time.Hour, queue.BudgetLease + DefaultQuotaMargin} {
		t.Run(history.String(), func(t *testing.T) {
			t.Parallel()
			testBudgetHistoryShorterThanTheLease(t, history)
		})
	}
}

// testBudgetHistoryShorterThanTheLease runs TestBudgetHistoryShorterThanTheLease
// with a --budget-history of history; one that leaves the journal a window
// of exactly zero counts none either, and is not taken for the default.
func testBudgetHistoryShorterThanTheLease(t *testing.T, history time.Duration) {
	core, logs := observer.New(zap.WarnLevel)
	e := setup(t, envConfig{tenants: []string{"contoso"}, machines: 2, logger: zap.New(core), noStart: true})
	e.opts.Queue.BudgetHistory = history
	e.start()
	res := e.collect("mde.offboard.result.>")
	e.setBudget("contoso", "1/1h")
	eventually(t, 10*time.Second, "the override ignored", func() bool {
		return logs.FilterMessageSnippet("budget override ignored").Len() > 0
	})
	e.offboardEach("contoso", "c", 0, 2)
	res.wait(t, 2, 20*time.Second)
	if n := res.createdOf("contoso"); n != 2 {
		t.Errorf("%d created, want 2: the override cannot be counted and is not applied", n)
	}
}

// TestBudgetCountsAnAcceptedCallWhoseActionDoesNotShow: the API accepts
// an offboard (2xx) with an answer that is not a Machine Action, and lists
// do not show the action within the worker's looks: the request fails
// api_error, but the action exists, so its budget slot stays spent. Before,
// the slot was given back and a budget of 1/1h let a second device go.
func TestBudgetCountsAnAcceptedCallWhoseActionDoesNotShow(t *testing.T) {
	t.Parallel()
	e := setup(t, envConfig{machines: 2, tenants: []string{"contoso"}, noStart: true,
		extra: "    guards:\n      budget: \"1/1h\"\n",
		sim:   mdesim.Options{ActionVisibleAfter: time.Hour}})
	// The held request waits in the stream, counted by the stats loop:
	// at its default 15 s period, the wait below could end before a pass.
	e.opts.StatsEvery = 100 * time.Millisecond
	// The action is looked for until it would have shown: a second here.
	e.opts.ActionShowsWithin = time.Second
	withRewrite(e, func(req *http.Request, status int, body []byte) []byte {
		if isOffboard(req) && status/100 == 2 {
			return nil
		}
		return body
	})
	e.start()
	c := e.collect("mde.offboard.result.>")
	tt := e.tenants["contoso"]
	r := e.one(c, "mde.offboard.request.contoso", map[string]any{"requestId": "unread-1", "machineId": tt.machines[0].ID})
	if r.Outcome != offboard.OutcomeFailed || len(e.sim.Actions(tt.tenantID)) != 1 {
		t.Fatalf("result %s %+v, %d actions; want failed with the action made", r.Outcome, r.Error, len(e.sim.Actions(tt.tenantID)))
	}
	tenant := map[string]string{"tenant": "contoso"}
	if left := gaugeOf(t, e.reg, "mde_offboard_budget_remaining", tenant); left != 0 {
		t.Fatalf("budget left %v after a call the API accepted, want 0", left)
	}
	e.publish("mde.offboard.request.contoso", map[string]any{"requestId": "second", "machineId": tt.machines[1].ID}, "second")
	eventually(t, 10*time.Second, "the second request held by the budget", func() bool {
		return gaugeOf(t, e.reg, "mde_offboard_held_requests", map[string]string{"tenant": "contoso", "reason": "budget"}) == 1
	})
	if n := len(e.sim.Actions(tt.tenantID)); n != 1 {
		t.Errorf("%d actions under a budget of 1/1h", n)
	}
}
