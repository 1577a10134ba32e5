package worker

import (
	"net/http"
	"slices"
	"testing"
	"time"

	"github.com/contoso-secops/mde-offboard/internal/mde"
	"github.com/contoso-secops/mde-offboard/internal/mde/mdesim"
	"github.com/contoso-secops/mde-offboard/offboard"
)

// TestServerBusyWaitsItsRetryAfter: a 503 that says when to come back
// (Retry-After) is tried again no sooner, not after the backoff's second:
// a service that announced it is busy for a while would get the
// attempts of every request in that while, and each request would give
// up as api_error before the service is back.
func TestServerBusyWaitsItsRetryAfter(t *testing.T) {
	t.Parallel()
	e := setupLoop(t, `["100/1m"]`, RetryPolicy{})
	const busy = 40 * time.Second
	e.sim.InjectStatus(loopTenantID, mde.APIMachines, http.StatusServiceUnavailable, "ServiceUnavailable", "The service is busy.", 1, busy)
	e.publishRequest(t, "r-1", map[string]any{"computerDnsName": "pc-1.contoso.local"})
	reads := func() int {
		return len(slices.DeleteFunc(e.sim.Calls(), func(c mdesim.Call) bool { return c.API != mde.APIMachines }))
	}
	start := e.clock.Now()
	// When the first and the second read were seen, by the fake clock.
	var first, second time.Duration = -1, -1
	see := func() {
		n := reads()
		if n >= 1 && first < 0 {
			first = e.clock.Since(start)
		}
		if n >= 2 && second < 0 {
			second = e.clock.Since(start)
		}
	}
	deadline := time.After(30 * time.Second)
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case r := <-e.results:
			see()
			if r.Outcome != offboard.OutcomeCreated {
				t.Fatalf("result %s %+v, want created", r.Outcome, r.Error)
			}
			if second-first < busy-time.Second {
				t.Errorf("the read after the 503 went out %v after it, want at least its Retry-After (%v)", second-first, busy)
			}
			return
		case <-tick.C:
			see()
			e.clock.Advance(time.Second)
		case <-deadline:
			t.Fatalf("no result after %v of fake time", e.clock.Since(start))
		}
	}
}
