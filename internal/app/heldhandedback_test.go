package app

import (
	"testing"
	"time"

	"github.com/contoso-secops/mde-offboard/internal/queue/natstest"
)

// TestHeldByBudgetCountsARequestHandedBack: a request fetched while its
// tenant's budget has room, and waiting for the slot another took, goes
// back to the stream when its worker stops (a rolling update). The worker
// that takes the tenant then fetches nothing while the budget is spent:
// the request waits there, delivered once and not acked, for the budget's
// window. It is held by the budget as much as one never fetched, and
// mde_offboard_held_requests{reason="budget"} must count it. Before, it
// counted the requests never delivered and this worker's own waiting for
// a slot only: 0 here, while mde_offboard_oldest_waiting_seconds showed
// the request waiting, and MdeOffboardRequestsWaitingTooLong, quiet for a
// tenant held by its budget, paged 15 minutes later.
func TestHeldByBudgetCountsARequestHandedBack(t *testing.T) {
	t.Parallel()
	srv := natstest.Start(t, 1) // outlives the first worker
	e := setup(t, envConfig{tenants: []string{"contoso"}, machines: 2, extra: "    guards:\n      budget: \"1/1h\"\n", noStart: true})
	e.opts.NATSURL = srv.URLs()
	e.opts.StatsEvery = 100 * time.Millisecond
	e.start()
	res := e.collect("mde.offboard.result.>")
	held := func() float64 {
		return gaugeOf(t, e.reg, "mde_offboard_held_requests", map[string]string{"tenant": "contoso", "reason": "budget"})
	}
	e.offboardEach("contoso", "c", 0, 2)
	eventually(t, 10*time.Second, "one created, the other fetched and waiting for the spent budget", func() bool {
		return res.resultsOf("contoso") == 1 && held() == 1
	})

	e.stop() // the waiting request goes back to the stream
	e.start()
	waiting := func() float64 {
		return gaugeOf(t, e.reg, "mde_offboard_oldest_waiting_seconds", map[string]string{"tenant": "contoso", "priority": "normal"})
	}
	eventually(t, 10*time.Second, "the restarted worker sees the request waiting", func() bool { return waiting() > 0 })
	eventually(t, 5*time.Second, "the request handed back counted as held by the budget", func() bool { return held() == 1 })
}
