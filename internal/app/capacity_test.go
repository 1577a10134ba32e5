package app

import (
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/contoso-secops/mde-offboard/internal/mde/mdesim"
	"github.com/contoso-secops/mde-offboard/internal/queue"
	"github.com/contoso-secops/mde-offboard/offboard"
)

// TestMaxRequestsBoundsTheWorker: with room for one request at a time
// over all tenants, no two offboard calls overlap, whichever tenant they
// are for, and both tenants are served. Each tenant alone may have four
// under way (maxInFlight).
func TestMaxRequestsBoundsTheWorker(t *testing.T) {
	t.Parallel()
	const latency = 50 * time.Millisecond
	e := setup(t, envConfig{machines: 4, sim: mdesim.Options{Latency: latency}, noStart: true})
	e.opts.MaxRequests = 1
	e.start()
	c := e.collect("mde.offboard.result.>")
	for _, name := range []string{"contoso", "fabrikam"} {
		for i, m := range e.tenants[name].machines {
			id := fmt.Sprintf("%s-%d", name, i)
			e.publish("mde.offboard.request."+name, map[string]any{"requestId": id, "machineId": m.ID}, name+":"+id)
		}
	}
	got := c.wait(t, 8, 30*time.Second)
	var starts []time.Time
	for _, call := range e.sim.Calls() {
		if call.API == mdesim.APIOffboard {
			starts = append(starts, call.At)
		}
	}
	slices.SortFunc(starts, func(a, b time.Time) int { return a.Compare(b) })
	if len(starts) != 8 || len(got) != 8 {
		t.Fatalf("%d offboard calls, %d results; want 8 each", len(starts), len(got))
	}
	for i := 1; i < len(starts); i++ {
		// A call's answer takes latency; the next request starts after
		// the whole of the one before.
		if gap := starts[i].Sub(starts[i-1]); gap < latency {
			t.Errorf("offboard calls %d and %d started %v apart, less than one call (%v): two requests at once", i, i+1, gap, latency)
		}
	}
}

// boundToOne starts the app with room for one request at a time.
func boundToOne(t *testing.T, c envConfig) *env {
	t.Helper()
	c.noStart = true
	e := setup(t, c)
	e.opts.MaxRequests = 1
	e.opts.StatsEvery = 100 * time.Millisecond
	e.start()
	return e
}

// publishWhilePaused publishes a request for each of the tenant's
// machines while its normal priority is paused, so that they are all
// waiting when it resumes, and returns the time of the resume.
func (e *env) publishWhilePaused(tenant string) time.Time {
	e.t.Helper()
	e.control("pause", tenant, "normal")
	eventually(e.t, 10*time.Second, tenant+" paused", func() bool {
		return gaugeOf(e.t, e.reg, "mde_offboard_tenant_paused", map[string]string{"tenant": tenant, "priority": "normal"}) == 1
	})
	for i, m := range e.tenants[tenant].machines {
		id := fmt.Sprintf("%s-%d", tenant, i)
		e.publish("mde.offboard.request."+tenant, map[string]any{"requestId": id, "machineId": m.ID}, tenant+":"+id)
	}
	return e.control("resume", tenant, "normal")
}

// TestRequestHeldByItsBudgetLeavesRoom: a request waiting for its
// tenant's spent budget (an hour here) gives its room back meanwhile: with
// room for one request, another tenant is still served.
func TestRequestHeldByItsBudgetLeavesRoom(t *testing.T) {
	t.Parallel()
	e := boundToOne(t, envConfig{tenants: []string{"contoso", "fabrikam"}, machines: 2})
	e.setBudget("contoso", "1/1h")
	eventually(t, 10*time.Second, "contoso's budget in force", func() bool {
		return gaugeOf(t, e.reg, "mde_offboard_budget_remaining", map[string]string{"tenant": "contoso"}) == 1
	})
	c := e.collect("mde.offboard.result.>")
	e.publishWhilePaused("contoso") // both in one pull: the second waits for the budget
	eventually(t, 10*time.Second, "contoso's first request answered", func() bool { return c.resultsOf("contoso") == 1 })
	eventually(t, 10*time.Second, "contoso's second request held by its budget", func() bool {
		return gaugeOf(t, e.reg, "mde_offboard_held_requests", map[string]string{"tenant": "contoso", "reason": "budget"}) >= 1
	})
	m := e.tenants["fabrikam"].machines[0]
	e.publish("mde.offboard.request.fabrikam", map[string]any{"requestId": "f-0", "machineId": m.ID}, "fabrikam:f-0")
	eventually(t, 15*time.Second, "fabrikam served while contoso's budget is spent", func() bool {
		return c.resultsOf("fabrikam") == 1
	})
}

// TestPulledRequestNeverWaitsForRoom: room is taken before the pull, so a
// request pulled is worked on at once and kept alive: with room for one
// request and calls longer than the ack wait, none is delivered twice.
// An ack wait of 3 s: with one of a second, a machine loaded enough to
// hold the keep-alive back a second let it run out once.
func TestPulledRequestNeverWaitsForRoom(t *testing.T) {
	t.Parallel()
	e := boundToOne(t, envConfig{tenants: []string{"contoso"}, machines: 2, ackWait: 3 * time.Second,
		sim: mdesim.Options{Latency: 4 * time.Second}})
	c := e.collect("mde.offboard.result.>")
	e.publishWhilePaused("contoso")
	c.wait(t, 2, 30*time.Second)
	cons, err := e.js.Consumer(t.Context(), offboard.StreamRequests, queue.ConsumerName("contoso", offboard.Normal))
	if err != nil {
		t.Fatal(err)
	}
	info, err := cons.Info(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if info.Delivered.Consumer > 2 {
		t.Errorf("%d deliveries for 2 requests: a pulled request's ack wait ran out while it waited for room", info.Delivered.Consumer)
	}
}

// TestPauseHoldsRequestsWaitingForRoom: with room for one request, the
// tenant's next request is not pulled before the first is done, so a
// pause in between stops it: no offboard call starts a second after it.
func TestPauseHoldsRequestsWaitingForRoom(t *testing.T) {
	t.Parallel()
	e := boundToOne(t, envConfig{tenants: []string{"contoso"}, machines: 2, sim: mdesim.Options{Latency: 2 * time.Second}})
	start := e.publishWhilePaused("contoso")
	eventually(t, 20*time.Second, "first offboard call sent", func() bool { return len(e.offboardCallsSince("contoso", start)) >= 1 })
	paused := e.control("pause", "contoso", "normal")
	time.Sleep(4 * time.Second) // the first call's answer, and room for the second
	if late := e.offboardCallsSince("contoso", paused.Add(time.Second)); len(late) > 0 {
		t.Errorf("offboard call started %v after the pause", late[0].Sub(paused).Round(time.Millisecond))
	}
}
