package worker

import (
	"net/http"
	"testing"
	"time"

	"github.com/contoso-secops/mde-offboard/internal/mde/mdesim"
	"github.com/contoso-secops/mde-offboard/offboard"
)

// TestRefusedAsPendingLooksNoLongerThanTheActionTakesToShow: the API
// refuses the request's offboard as ActiveRequestAlreadyExists and the
// device's list never shows the pending action. With the default backoff
// (1 s doubling, capped at a minute), the request must be answered once
// ActionShowsWithin (a minute) has passed since the refusal, not a
// whole backoff later: it holds its in-flight slot and its device
// meanwhile. Before, its last look came up to two minutes after the
// refusal (the backoff of 32 s to a minute that started before the
// minute was up ran on past it): answered 110 s after it here.
func TestRefusedAsPendingLooksNoLongerThanTheActionTakesToShow(t *testing.T) {
	t.Parallel()
	e := setupLoop(t, `["100/1m"]`, RetryPolicy{})
	e.sim.InjectStatus(loopTenantID, mdesim.APIOffboard, http.StatusBadRequest, "ActiveRequestAlreadyExists", "Action is already in progress.", 1, 0)
	e.publish(t, "r-1")
	start := e.clock.Now()
	deadline := time.After(30 * time.Second)
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case r := <-e.results:
			if r.Outcome != offboard.OutcomeFailed || r.Error == nil || r.Error.Code != offboard.CodeAPIError {
				t.Fatalf("result %s %+v, want failed api_error", r.Outcome, r.Error)
			}
			t.Logf("answered %v after it was published", e.clock.Since(start))
			// The fake clock moves on by 250 ms steps while the looks
			// are read: a few steps of slack.
			if took := e.clock.Since(start); took > time.Minute+5*time.Second {
				t.Errorf("answered %v (fake time) after it was published, want about the minute of ActionShowsWithin", took)
			}
			return
		case <-tick.C:
			e.clock.Advance(250 * time.Millisecond)
		case <-deadline:
			t.Fatalf("no result after %v of fake time", e.clock.Since(start))
		}
	}
}
