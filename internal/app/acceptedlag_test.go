package app

import (
	"encoding/json"
	"net/http"
	"testing"
	"time"

	"github.com/contoso-secops/mde-offboard/internal/mde"
	"github.com/contoso-secops/mde-offboard/internal/mde/mdesim"
	"github.com/contoso-secops/mde-offboard/offboard"
)

// TestAcceptedCallWhoseActionShowsLateIsCreated: the API accepts an
// offboard (2xx) with an answer that is not a Machine Action (empty: a
// proxy cut it), and the new action is missing from the device's list of
// actions for a moment longer than the worker's few looks take. The
// action exists and shows within ActionShowsWithin: the request must be
// answered created with it. Before, it was answered failed api_error,
// with a dead letter, while its device was offboarded.
func TestAcceptedCallWhoseActionShowsLateIsCreated(t *testing.T) {
	t.Parallel()
	e := acceptedWithoutAnAction(t)
	e.start()
	c := e.collect("mde.offboard.result.>")
	tt := e.tenants["contoso"]
	r := e.one(c, "mde.offboard.request.contoso", map[string]any{"requestId": "accepted-1", "machineId": tt.machines[0].ID})
	createdWithTheCallsAction(t, e, r)
}

// TestAcceptedCallAfterAPauseWhoseActionShowsLateIsCreated: as above, but
// the request's first attempt was answered 429 and the accepted attempt
// went out after the pause, longer than ActionShowsWithin after the
// request's "calling" entry was written. The look for the action must
// run until ActionShowsWithin after the accepted attempt, not after the
// entry: before, the pause counted as time the action had to show, and
// the request was answered failed api_error after the few looks, with
// its device offboarded.
func TestAcceptedCallAfterAPauseWhoseActionShowsLateIsCreated(t *testing.T) {
	t.Parallel()
	e := acceptedWithoutAnAction(t)
	tt := e.tenants["contoso"]
	// The first attempt's pause outlasts ActionShowsWithin.
	e.sim.InjectStatus(tt.tenantID, mde.APIOffboard, http.StatusTooManyRequests, "429", "API calls quota exceeded! maximum allowed 100 per 00:01:00", 1, 4*acceptedLag)
	e.start()
	c := e.collect("mde.offboard.result.>")
	r := e.one(c, "mde.offboard.request.contoso", map[string]any{"requestId": "accepted-late-1", "machineId": tt.machines[0].ID})
	createdWithTheCallsAction(t, e, r)
}

// acceptedLag is how long a new action is missing from the device's list
// of actions: longer than the test's few looks (backoff of 20 to 200 ms).
const acceptedLag = 1500 * time.Millisecond

// acceptedWithoutAnAction sets up, not started, a worker of contoso with
// one device, whose offboard calls the API accepts with an answer that is
// no Machine Action (empty: a proxy cut it), and whose new actions show in
// lists acceptedLag late, within the worker's ActionShowsWithin.
func acceptedWithoutAnAction(t *testing.T) *env {
	t.Helper()
	e := setup(t, envConfig{machines: 1, tenants: []string{"contoso"}, noStart: true,
		sim: mdesim.Options{ActionVisibleAfter: acceptedLag}})
	e.opts.ActionShowsWithin = 3 * acceptedLag
	withRewrite(e, func(req *http.Request, status int, body []byte) []byte {
		if isOffboard(req) && status/100 == 2 {
			return nil
		}
		return body
	})
	return e
}

// createdWithTheCallsAction checks that r is answered created with the one
// action on contoso's device: the action its call made.
func createdWithTheCallsAction(t *testing.T, e *env, r offboard.Result) {
	t.Helper()
	actions := e.sim.Actions(e.tenants["contoso"].tenantID)
	var got struct{ ID string }
	_ = json.Unmarshal(r.MachineAction, &got)
	if len(actions) != 1 || r.Outcome != offboard.OutcomeCreated || got.ID != actions[0].ID {
		t.Errorf("result %s %+v with %d actions; want created with the call's action", r.Outcome, r.Error, len(actions))
	}
}
