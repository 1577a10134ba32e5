package worker

import (
	"net/http"
	"slices"
	"testing"
	"time"

	"github.com/contoso-secops/mde-offboard/internal/mde"
	"github.com/contoso-secops/mde-offboard/internal/mde/mdesim"
	"github.com/contoso-secops/mde-offboard/internal/queue"
	"github.com/contoso-secops/mde-offboard/offboard"
)

// TestEarlierActionLookedForAgainAfterAWait: a request taken again after
// a call of it whose answer was lost looks for that call's action at
// once, before lists show it, and finds none; its first attempt is then
// answered 429 with a Retry-After of an hour. Meanwhile the earlier
// call's action shows, and the device takes it. The next attempt does not
// go out: the action is looked for again first, found, and is the
// request's result. Before, the attempt went out on the look made an hour
// earlier, and the API, which refuses a second offboard only while the
// first is pending, made a second action for the device.
func TestEarlierActionLookedForAgainAfterAWait(t *testing.T) {
	t.Parallel()
	e := setupLoopOpts(t, `["100/1m"]`, "", RetryPolicy{NotFoundCheck: 1}, func(o *Options) {
		o.Presence = marked{instance: "w-1"}
	})
	const comment = "offboard r-1"
	e.earlierCall(t)
	e.sim.InjectStatus(loopTenantID, mde.APIOffboard, http.StatusTooManyRequests, "", "API calls quota exceeded", 1, time.Hour)
	e.publishR1(t, comment)
	// The fake clock moves 100 ms a step until the 429 (the look right
	// after the earlier call, its backoff), then 10 s (the 429's pause).
	r := e.resultOnceShown(t, http.StatusTooManyRequests, 10*time.Second, func() { e.earlierActionShows(t, comment) })
	e.oneActionCreated(t, r, "the earlier call's")
}

// earlierActionShows makes the action of an earlier call of the request,
// with its comment, and has the device take it.
func (e *loopEnv) earlierActionShows(t *testing.T, comment string) {
	t.Helper()
	v := e.w.tenants["contoso"].Client.Offboard(t.Context(), loopMachine, comment)
	a, err := mde.ParseAction(v.Body)
	if err != nil {
		t.Fatalf("the earlier call's action: %v", err)
	}
	e.sim.SetActionStatus(loopTenantID, a.ID, mdesim.StatusSucceeded)
}

// TestOwnLostAnswersActionLookedForAgainAfterAWait: a request's first
// attempt is answered 503, and its action does not show in the looks
// right after; its next attempt is answered 429 with a Retry-After of an
// hour. Meanwhile the first attempt's action shows, and the device takes
// it. The attempt after the pause does not go out: the action is looked
// for again first, found, and is the request's result, as for a call of
// an earlier delivery. Before, the attempt went out on the looks made an
// hour earlier, and the API, which refuses a second offboard only while
// the first is pending, made a second action for the device.
func TestOwnLostAnswersActionLookedForAgainAfterAWait(t *testing.T) {
	t.Parallel()
	e := setupLoop(t, `["100/1m"]`, RetryPolicy{NotFoundCheck: 1})
	const comment = "offboard r-1"
	e.sim.InjectStatus(loopTenantID, mde.APIOffboard, http.StatusServiceUnavailable, "", "", 1, 0)
	e.sim.InjectStatus(loopTenantID, mde.APIOffboard, http.StatusTooManyRequests, "", "API calls quota exceeded", 1, time.Hour)
	e.publishR1(t, comment)
	// The fake clock moves 100 ms a step until the 429 (the backoff and
	// the looks after the 503), then 10 s (the 429's pause). The 503's
	// action shows late.
	r := e.resultOnceShown(t, http.StatusTooManyRequests, 10*time.Second, func() { e.earlierActionShows(t, comment) })
	e.oneActionCreated(t, r, "the first attempt's")
}

// TestLostAnswersActionLookedForBeforeA404Repeat: a request's first
// attempt is answered 503, and its action does not show in the looks
// right after; its next attempt is answered 404, which the API is known
// to answer for devices that exist. Meanwhile the first attempt's action
// shows. The repeat after the 404's backoff does not go out: the action
// is looked for again first, found, and is the request's result. Before,
// the repeat was answered 404 again, and the request machine_not_found,
// with an action on the device.
func TestLostAnswersActionLookedForBeforeA404Repeat(t *testing.T) {
	t.Parallel()
	e := setupLoop(t, `["100/1m"]`, RetryPolicy{NotFoundCheck: 1})
	const comment = "offboard r-1"
	e.sim.InjectStatus(loopTenantID, mde.APIOffboard, http.StatusServiceUnavailable, "", "", 1, 0)
	e.sim.InjectStatus(loopTenantID, mde.APIOffboard, http.StatusNotFound, "ResourceNotFound", "Machine not found", 1, 0)
	e.publishR1(t, comment)
	// The 503's action shows late, after the 404, and the repeat would
	// be answered 404 again.
	r := e.resultOnceShown(t, http.StatusNotFound, 100*time.Millisecond, func() {
		e.earlierActionShows(t, comment)
		e.sim.InjectStatus(loopTenantID, mde.APIOffboard, http.StatusNotFound, "ResourceNotFound", "Machine not found", 1, 0)
	})
	e.oneActionCreated(t, r, "the first attempt's")
}

// publishR1 publishes request r-1 for the loop's device, with comment.
func (e *loopEnv) publishR1(t *testing.T, comment string) {
	t.Helper()
	e.publishRequest(t, "r-1", map[string]any{"machineId": loopMachine, "comment": comment})
}

// resultOnceShown moves the fake clock 100 ms a step until an offboard
// call is answered status, then calls show once and moves it by after a
// step, until a result comes.
func (e *loopEnv) resultOnceShown(t *testing.T, status int, after time.Duration, show func()) offboard.Result {
	t.Helper()
	step, shown := 100*time.Millisecond, false
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	deadline := time.After(60 * time.Second)
	for {
		select {
		case r := <-e.results:
			if !shown {
				t.Fatalf("result %s %s before an offboard call was answered %d", r.RequestID, r.Outcome, status)
			}
			return r
		case <-tick.C:
			if !shown && slices.ContainsFunc(e.sim.Calls(), func(c mdesim.Call) bool { return c.Status == status }) {
				show()
				step, shown = after, true
			}
			e.clock.Advance(step)
		case <-deadline:
			t.Fatal("no result")
		}
	}
}

// TestOneLookAgainForEarlierAndLostCalls: a request taken again after a
// call of it whose answer was lost looks for that call's action, finds
// none, and its first attempt is answered 503 and its action looked for
// too; its next attempt is answered 429 with a Retry-After of an hour.
// The attempt after the pause looks for the actions of both calls once:
// the look for the earlier call's action, made since that call, also
// finds one of the 503's. Before, the lost attempt's action was looked
// for again right after, as many list calls again, its place in the quota
// taken meanwhile.
func TestOneLookAgainForEarlierAndLostCalls(t *testing.T) {
	t.Parallel()
	e := setupLoopOpts(t, `["100/1m"]`, "", RetryPolicy{NotFoundCheck: 1}, func(o *Options) {
		o.Presence = marked{instance: "w-1"}
	})
	const comment = "offboard r-1"
	e.earlierCall(t)
	e.sim.InjectStatus(loopTenantID, mde.APIOffboard, http.StatusServiceUnavailable, "", "", 1, 0)
	e.sim.InjectStatus(loopTenantID, mde.APIOffboard, http.StatusTooManyRequests, "", "API calls quota exceeded", 1, time.Hour)
	e.publishR1(t, comment)
	r := e.resultOnceShown(t, http.StatusTooManyRequests, 10*time.Second, func() {})
	if r.RequestID != "r-1" || r.Outcome != offboard.OutcomeCreated {
		t.Errorf("result %s %s %+v, want r-1 created", r.RequestID, r.Outcome, r.Error)
	}
	calls := e.sim.Calls()
	throttled := slices.IndexFunc(calls, func(c mdesim.Call) bool { return c.Status == http.StatusTooManyRequests })
	looks := 0
	for _, c := range calls[throttled+1:] {
		if c.API == mde.APIMachineActions {
			looks++
		}
	}
	// NotFoundCheck 1: a look, and one more after a backoff.
	if looks != 2 {
		t.Errorf("%d lists of actions after the pause, want 2: one look for both calls' actions", looks)
	}
}

// oneActionCreated checks that the device has one action, whose (the
// earlier call's, the first attempt's), and that r answers r-1 created.
func (e *loopEnv) oneActionCreated(t *testing.T, r offboard.Result, whose string) {
	t.Helper()
	if n := len(e.sim.Actions(loopTenantID)); n != 1 {
		t.Errorf("%d actions for the device, want 1: %s", n, whose)
	}
	if r.RequestID != "r-1" || r.Outcome != offboard.OutcomeCreated {
		t.Errorf("result %s %s %+v, want r-1 created with %s action", r.RequestID, r.Outcome, r.Error, whose)
	}
}

// earlierCall writes the ledger entry of an earlier delivery's call of
// r-1 (the request's first message: sequence 1), made now by this
// process (w-1).
func (e *loopEnv) earlierCall(t *testing.T) {
	t.Helper()
	earlier := &queue.Entry{State: queue.StateCalling, Seq: 1, MachineID: loopMachine, Started: e.clock.Now().UTC(), Writer: "w-1"}
	if err := e.w.opts.Ledger.Put(t.Context(), "contoso", "r-1", nil, earlier); err != nil {
		t.Fatal(err)
	}
}
