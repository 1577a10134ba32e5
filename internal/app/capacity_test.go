package app

import (
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/contoso-secops/mde-offboard/internal/mde/mdesim"
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
