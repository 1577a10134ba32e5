package app

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/contoso-secops/mde-offboard/internal/control"
	"github.com/contoso-secops/mde-offboard/internal/mde/mdesim"
	"github.com/contoso-secops/mde-offboard/offboard"
)

// control applies an operator's change, as offboardctl does.
func (e *env) control(action, tenant, priority string) time.Time {
	e.t.Helper()
	store, err := control.Open(e.t.Context(), e.js, offboard.Subjects{})
	if err != nil {
		e.t.Fatal(err)
	}
	if _, err := store.Apply(e.t.Context(), control.Change{Tenant: tenant, Action: action, Priority: priority, By: "test", Reason: "test"}); err != nil {
		e.t.Fatal(err)
	}
	return time.Now()
}

// offboardCallsSince is when each of a tenant's offboard calls reached the
// simulator, from since on.
func (e *env) offboardCallsSince(tenant string, since time.Time) []time.Time {
	var at []time.Time
	for _, c := range e.sim.Calls() {
		if c.TenantID == e.tenants[tenant].tenantID && c.API == "offboard" && !c.At.Before(since) {
			at = append(at, c.At)
		}
	}
	return at
}

// resultsOf counts the requests of a tenant with a result.
func (c *collector) resultsOf(tenant string) int {
	n := 0
	for key := range c.snapshot() {
		if strings.HasPrefix(key, tenant+"/") {
			n++
		}
	}
	return n
}

// replica starts another app on the same NATS server.
func (e *env) replica() (*App, *prometheus.Registry) {
	e.t.Helper()
	o := e.opts
	o.NATSURL = e.app.NATSURL()
	o.Registry = prometheus.NewRegistry()
	a, err := New(o)
	if err != nil {
		e.t.Fatal(err)
	}
	if err := a.Start(e.t.Context()); err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() { _ = a.Stop(context.Background()) })
	return a, o.Registry
}

func gaugeOf(t *testing.T, reg *prometheus.Registry, name string, labels map[string]string) float64 {
	t.Helper()
	return metricValue(t, &env{reg: reg}, name, labels)
}

// TestPauseHoldsEveryReplica: a pause stops a tenant's offboard calls on
// both replicas within a second of the change being written, holds
// across a replica's restart, leaves another tenant served throughout,
// and a resume drains the rest, one action per device.
func TestPauseHoldsEveryReplica(t *testing.T) {
	t.Parallel()
	e := setup(t, envConfig{
		sim:     mdesim.Options{Latency: 20 * time.Millisecond},
		limits:  `["5/250ms"]`, // 20 calls a second: the backlog outlasts the pause's arrival
		tenants: []string{"contoso", "fabrikam"}, machines: 40, noStart: true,
	})
	// The requests handed back to the stream are counted by the stats
	// loop: at its default 15 s period, the 5 s wait below could end
	// before a pass.
	e.opts.StatsEvery = 100 * time.Millisecond
	e.start()
	r2, reg2 := e.replica()
	res := e.collect("mde.offboard.result.>")
	e.offboardEach("contoso", "c", 0, 30)
	eventually(t, 10*time.Second, "the first contoso results", func() bool { return res.resultsOf("contoso") >= 5 })
	paused := e.control(control.ActionPause, "contoso", control.PriorityAll)

	// The other tenant is served throughout; its drain also gives the
	// pause more than a second to show.
	e.offboardEach("fabrikam", "f", 0, 20)
	eventually(t, 15*time.Second, "fabrikam served during the pause", func() bool { return res.resultsOf("fabrikam") == 20 })
	eventually(t, 5*time.Second, "the pause shows on both replicas", func() bool {
		return gaugeOf(t, e.reg, "mde_offboard_tenant_paused", map[string]string{"tenant": "contoso"}) == 2 &&
			gaugeOf(t, reg2, "mde_offboard_tenant_paused", map[string]string{"tenant": "contoso"}) == 2
	})
	eventually(t, 5*time.Second, "the held requests counted", func() bool {
		return gaugeOf(t, e.reg, "mde_offboard_held_requests", map[string]string{"tenant": "contoso", "reason": "pause"}) > 0
	})
	calls := e.offboardCallsSince("contoso", paused)
	if len(calls) > 0 {
		t.Logf("last contoso call started %v after the pause was written (%d calls under way or already fetched)", calls[len(calls)-1].Sub(paused), len(calls))
	}
	if late := e.offboardCallsSince("contoso", paused.Add(time.Second)); len(late) > 0 {
		t.Errorf("%d contoso calls started more than a second after the pause", len(late))
	}
	held := 30 - res.resultsOf("contoso")
	if held == 0 {
		t.Fatal("the whole backlog was done before the pause: nothing shows it")
	}

	// A replica restarted during the pause takes none of the tenant's
	// requests.
	if err := r2.Stop(context.Background()); err != nil {
		t.Fatal(err)
	}
	e.replica()
	e.offboardEach("fabrikam", "f", 20, 40)
	eventually(t, 15*time.Second, "fabrikam served after the restart", func() bool { return res.resultsOf("fabrikam") == 40 })
	if late := e.offboardCallsSince("contoso", paused.Add(time.Second)); len(late) > 0 {
		t.Errorf("%d contoso calls during the pause, across a restart", len(late))
	}
	if n := res.resultsOf("contoso"); n != 30-held {
		t.Errorf("%d contoso results during the pause, want %d", n, 30-held)
	}

	e.control(control.ActionResume, "contoso", control.PriorityAll)
	res.wait(t, 70, 20*time.Second)
	e.oneActionEach("contoso", 30)
	e.oneActionEach("fabrikam", 40)
}

// TestPauseBulkKeepsNormalFlowing: pausing a tenant's bulk priority holds
// its bulk requests and serves its normal ones.
func TestPauseBulkKeepsNormalFlowing(t *testing.T) {
	t.Parallel()
	e := setup(t, envConfig{tenants: []string{"contoso"}, machines: 20})
	res := e.collect("mde.offboard.result.>")
	e.control(control.ActionPause, "contoso", string(offboard.Bulk))
	// The contract gives a control one second to take effect on every
	// replica; requests published sooner may be taken before it does.
	time.Sleep(time.Second)
	for i := range 10 {
		id := "b" + string(rune('a'+i))
		e.publish("mde.offboard.request.contoso.bulk", map[string]any{"requestId": id, "machineId": e.tenants["contoso"].machines[10+i].ID}, "contoso:"+id)
	}
	e.offboardEach("contoso", "n", 0, 10)
	eventually(t, 10*time.Second, "normal requests served", func() bool { return res.resultsOf("contoso") >= 10 })
	for key := range res.snapshot() {
		if strings.HasPrefix(key, "contoso/b") {
			t.Errorf("bulk request %s answered while bulk was paused", key)
		}
	}
	if got := gaugeOf(t, e.reg, "mde_offboard_tenant_paused", map[string]string{"tenant": "contoso", "priority": "bulk"}); got != 1 {
		t.Errorf("tenant_paused{priority=bulk} = %v, want 1", got)
	}
	e.control(control.ActionResume, "contoso", string(offboard.Bulk))
	res.wait(t, 20, 10*time.Second)
	e.oneActionEach("contoso", 20)
}

// TestHeldByPauseCountsRequestsHandedBack: a pause hands the requests
// fetched and waiting (here for a budget slot) back to the stream, where
// the server counts them delivered, not waiting. held_requests{reason="pause"}
// counts them with those never fetched, as offboardctl status does: every
// request of the tenant not answered.
func TestHeldByPauseCountsRequestsHandedBack(t *testing.T) {
	t.Parallel()
	e := setup(t, envConfig{tenants: []string{"contoso"}, machines: 12, extra: "    guards:\n      budget: \"2/1h\"\n", noStart: true})
	e.opts.StatsEvery = 100 * time.Millisecond // as in TestHeldOnceWhenPausedAndOverBudget
	e.start()
	res := e.collect("mde.offboard.result.>")
	e.offboardEach("contoso", "c", 0, 12)
	eventually(t, 10*time.Second, "the budget spent, requests fetched waiting for a slot", func() bool {
		return res.resultsOf("contoso") == 2 && gaugeOf(t, e.reg, "mde_offboard_in_flight_requests", map[string]string{"tenant": "contoso"}) > 0
	})
	e.control(control.ActionPause, "contoso", control.PriorityAll)
	held := func() float64 {
		return gaugeOf(t, e.reg, "mde_offboard_held_requests", map[string]string{"tenant": "contoso", "reason": "pause"})
	}
	eventually(t, 10*time.Second, "every unanswered request held by the pause", func() bool {
		return held() == float64(12-res.resultsOf("contoso"))
	})
	e.control(control.ActionResume, "contoso", control.PriorityAll)
	eventually(t, 10*time.Second, "nothing held by the pause after the resume", func() bool { return held() == 0 })
}

// TestHeldOnceWhenPausedAndOverBudget: a request fetched and waiting for a
// slot of a spent budget when its priority is paused goes back to the
// stream at the call, whatever the budget: the pause holds it, and
// held_requests counts it under pause alone, not under budget as well.
// Resumed, the budget holds it again. Either way the reasons add up to the
// tenant's unanswered requests.
func TestHeldOnceWhenPausedAndOverBudget(t *testing.T) {
	t.Parallel()
	e := setup(t, envConfig{tenants: []string{"contoso"}, machines: 12, extra: "    guards:\n      budget: \"2/1h\"\n", noStart: true})
	// The stats pass that last read the backlog may have read it while a
	// fetch was under way; a pass every 100ms reads it again, as the
	// default 15s would in service.
	e.opts.StatsEvery = 100 * time.Millisecond
	e.start()
	res := e.collect("mde.offboard.result.>")
	e.offboardEach("contoso", "c", 0, 12)
	held := func(reason string) float64 {
		return gaugeOf(t, e.reg, "mde_offboard_held_requests", map[string]string{"tenant": "contoso", "reason": reason})
	}
	eventually(t, 10*time.Second, "the budget spent, requests fetched waiting for a slot", func() bool {
		return res.resultsOf("contoso") == 2 && held("budget") == 10
	})
	e.control(control.ActionPause, "contoso", control.PriorityAll)
	eventually(t, 10*time.Second, "every unanswered request held by the pause, none by the budget", func() bool {
		return held("pause") == 10 && held("budget") == 0
	})
	e.control(control.ActionResume, "contoso", control.PriorityAll)
	eventually(t, 10*time.Second, "every unanswered request held by the budget again, none by the pause", func() bool {
		return held("pause") == 0 && held("budget") == 10
	})
}
