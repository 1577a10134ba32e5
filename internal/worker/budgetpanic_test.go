package worker

import (
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/contoso-secops/mde-offboard/internal/mde/mdesim"
	"github.com/contoso-secops/mde-offboard/offboard"
)

// panicAfterOffboard is a transport that panics once the first offboard
// call it sends has been answered: the call went out and acted, and the
// attempt panics on its way back.
type panicAfterOffboard struct {
	next http.RoundTripper
	once sync.Once
}

func (p *panicAfterOffboard) RoundTrip(r *http.Request) (*http.Response, error) {
	resp, err := p.next.RoundTrip(r)
	if r.Method == http.MethodPost && strings.HasSuffix(r.URL.Path, "/offboard") {
		p.once.Do(func() {
			if resp != nil {
				_ = resp.Body.Close()
			}
			panic("offboard attempt")
		})
	}
	return resp, err
}

// TestPanickedAttemptKeepsItsSlot: with a budget of 1/1h, the first
// request's offboard call creates its action, then its attempt panics.
// The handler recovers and answers the request failed, but the call went
// out: its budget slot counts, and a second request, for another device,
// waits for the budget rather than offboard it. Before, the slot was
// given back (the attempt had not said it may have acted), and the
// second device was offboarded too.
func TestPanickedAttemptKeepsItsSlot(t *testing.T) {
	t.Parallel()
	e := setupLoopTransport(t, `["100/1m"]`, "    guards:\n      budget: \"1/1h\"\n", RetryPolicy{},
		func(o *Options) { o.StatsEvery = time.Minute },
		func(next http.RoundTripper) http.RoundTripper { return &panicAfterOffboard{next: next} })
	const other = "2e5bc9d7e413ddd7902c2932e418702b84d0cc07"
	e.sim.AddMachine(loopTenantID, mdesim.Machine{ID: other, ComputerDNSName: "pc-2.contoso.local",
		OSPlatform: "Windows11", HealthStatus: "Active", LastSeen: time.Now().Add(-time.Hour)})
	e.publish(t, "r-1")
	if r := e.nextResult(t, "r-1"); r.RequestID != "r-1" || r.Outcome != offboard.OutcomeFailed {
		t.Fatalf("result %s %s, want r-1 failed", r.RequestID, r.Outcome)
	}
	if n := len(e.sim.Actions(loopTenantID)); n != 1 {
		t.Fatalf("%d actions after r-1, want 1", n)
	}
	e.publishFor(t, "r-2", other)
	held := e.w.m.HeldRequests.WithLabelValues("contoso", HeldBudget)
	e.budgetStaysSpent(t, "%d actions with a budget of 1/1h: the slot of the call that panicked was given back")
	// The tenant fetches nothing while its budget is spent: r-2 counts as
	// held once the stats loop reads the backlog, at its next pass (a
	// minute here) if the budget ran out before r-2 was in the stream.
	// Half an hour of steps at most: the budget stays spent.
	stepped := 0
	for deadline := time.Now().Add(20 * time.Second); testutil.ToFloat64(held) == 0; {
		if time.Now().After(deadline) {
			t.Fatal("mde_offboard_held_requests{reason=budget} = 0, want r-2 held")
		}
		if stepped < 30 {
			e.clock.Advance(time.Minute)
			stepped++
		}
		time.Sleep(20 * time.Millisecond)
	}
}
