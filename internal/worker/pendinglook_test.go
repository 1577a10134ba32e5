package worker

import (
	"net/http"
	"testing"
	"time"

	"github.com/contoso-secops/mde-offboard/internal/mde"
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
//
// The fake clock stands still until the refusal has been looked at once
// (the refusal's time is then the clock's), and again for 10 s of real
// time once the minute is up, before it moves on to show how late an
// answer is: the worker's own work, slow on a loaded machine, takes no
// fake time but for its backoffs. Before, the clock ran on while the
// worker read the message, called, looked and answered: answered 75 s
// (fake time) after the publishing under load.
func TestRefusedAsPendingLooksNoLongerThanTheActionTakesToShow(t *testing.T) {
	t.Parallel()
	const step = 250 * time.Millisecond
	e := setupLoop(t, `["100/1m"]`, RetryPolicy{})
	e.sim.InjectStatus(loopTenantID, mdesim.APIOffboard, http.StatusBadRequest, "ActiveRequestAlreadyExists", "Action is already in progress.", 1, 0)
	e.publish(t, "r-1")
	firstLook := time.Now().Add(30 * time.Second)
	for !e.lookedAtActions() {
		if time.Now().After(firstLook) {
			t.Fatal("the refused request never looked at the device's actions")
		}
		time.Sleep(5 * time.Millisecond)
	}
	refused := e.clock.Now()
	waited := false
	deadline := time.After(60 * time.Second)
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case r := <-e.results:
			if r.Outcome != offboard.OutcomeFailed || r.Error == nil || r.Error.Code != offboard.CodeAPIError {
				t.Fatalf("result %s %+v, want failed api_error", r.Outcome, r.Error)
			}
			took := e.clock.Since(refused)
			t.Logf("answered %v (fake time) after the refusal", took)
			// A backoff's timer is set a moment after it reads the
			// clock, which may move meanwhile: a few steps of slack.
			if took > time.Minute+5*time.Second {
				t.Errorf("answered %v (fake time) after the refusal, want the minute of ActionShowsWithin", took)
			}
			return
		case <-tick.C:
			if e.clock.Since(refused) > time.Minute && !waited {
				// The minute is up: the answer comes without the clock
				// moving on. Given 10 s of real time for its last look
				// and its publishing, the clock moves on to show how
				// late it is.
				waited = true
				select {
				case r := <-e.results:
					e.results <- r
					continue
				case <-time.After(10 * time.Second):
				}
			}
			e.clock.Advance(step)
		case <-deadline:
			t.Fatalf("no result after %v of fake time", e.clock.Since(refused))
		}
	}
}

// lookedAtActions says whether the simulator answered a list of the
// device's actions.
func (e *loopEnv) lookedAtActions() bool {
	for _, c := range e.sim.Calls() {
		if c.API == mde.APIMachineActions {
			return true
		}
	}
	return false
}
