package app

import (
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/contoso-secops/mde-offboard/internal/config"
	"github.com/contoso-secops/mde-offboard/internal/mde"
	"github.com/contoso-secops/mde-offboard/internal/mde/mdesim"
	"github.com/contoso-secops/mde-offboard/internal/queue"
	"github.com/contoso-secops/mde-offboard/internal/worker"
	"github.com/contoso-secops/mde-offboard/offboard"
)

// onFirstCall makes the simulator of c run do once, with the env, on the
// first API call that match accepts (from the call's goroutine, its answer
// written and not yet sent on). bind hands it the env; call it before the
// env starts (noStart).
func onFirstCall(c *envConfig, match func(mdesim.Call) bool, do func(*env)) (bind func(*env)) {
	var (
		ep   atomic.Pointer[env]
		once sync.Once
	)
	c.sim.OnCall = func(call mdesim.Call) {
		if e := ep.Load(); e != nil && match(call) {
			once.Do(func() { do(e) })
		}
	}
	return func(e *env) { ep.Store(e) }
}

// answeredElsewhere is the message of the result another worker stores
// for a request it takes up (takeOver).
const answeredElsewhere = "answered by another worker"

// takeOver does what another worker does when it takes contoso's request
// id up as a crashed one's and answers it: it writes the id's "calling"
// entry over with a failed result. It reports false, writing nothing,
// when the entry is not a calling one.
func takeOver(t *testing.T, e *env, id string) bool {
	t.Helper()
	ledger, err := queue.NewLedger(t.Context(), e.js)
	if err != nil {
		t.Error(err)
		return false
	}
	entry, err := ledger.Get(t.Context(), "contoso", id)
	if err != nil || entry == nil || entry.State != queue.StateCalling {
		return false
	}
	answer := []byte(`{"requestId":"` + id + `","tenant":"contoso","outcome":"failed","attempt":1,"error":{"code":"api_error","message":"` + answeredElsewhere + `"}}`)
	if err := ledger.Finish(t.Context(), "contoso", id, entry, entry.Seq, answer); err != nil {
		t.Error(err)
	}
	return true
}

// wantAnsweredElsewhere checks that request id has one result: the one
// another worker stored (takeOver).
func wantAnsweredElsewhere(t *testing.T, r []offboard.Result, id string) {
	t.Helper()
	if len(r) != 1 || r[0].Error == nil || r[0].Error.Message != answeredElsewhere {
		for _, x := range r {
			t.Errorf("result of %s: %s %+v", id, x.Outcome, x.Error)
		}
		t.Errorf("%d results of %s, want the other worker's, once", len(r), id)
	}
}

// wantCreated checks that a request has one result, created, with the
// action actionID unless that is empty.
func wantCreated(t *testing.T, r []offboard.Result, actionID string) {
	t.Helper()
	var got struct{ ID string }
	if len(r) == 1 {
		_ = json.Unmarshal(r[0].MachineAction, &got)
	}
	if len(r) != 1 || r[0].Outcome != offboard.OutcomeCreated || actionID != "" && got.ID != actionID {
		for _, x := range r {
			t.Errorf("result: %s %+v, action %q", x.Outcome, x.Error, got.ID)
		}
		t.Errorf("%d results, want one, created with action %q", len(r), actionID)
	}
}

// deadWorkersCall makes contoso's first device's offboard call for
// request r1 as a worker that then died would have: its "calling" entry,
// of a release before entries named their writer and older than the ack
// wait (the call is not taken to be under way), and the call. It returns
// the action the call made.
func deadWorkersCall(t *testing.T, e *env) mde.Action {
	t.Helper()
	m := e.tenants["contoso"].machines[0]
	ledger, err := queue.NewLedger(t.Context(), e.js)
	if err != nil {
		t.Fatal(err)
	}
	if err := ledger.Put(t.Context(), "contoso", "r1", nil, &queue.Entry{
		State: queue.StateCalling, Seq: 1, MachineID: m.ID, Started: time.Now().Add(-3 * time.Second),
	}); err != nil {
		t.Fatal(err)
	}
	return e.offboardAsTheWorker(e.app.tenants[0], config.CommentData{RequestID: "r1", Tenant: "contoso", MachineID: m.ID})
}

// TestRepeatAfterATakeOverIsNotSent: a request's call is throttled (429,
// Retry-After 2 s), and while this worker waits out the pause another
// takes the request up (as it does when this one is frozen past its
// presence's lease): it writes the request's ledger entry and answers it.
// This worker does not send its call again: it finds the entry changed,
// and the request is answered from the ledger. One offboard call (the
// 429), no action, one result.
func TestRepeatAfterATakeOverIsNotSent(t *testing.T) {
	t.Parallel()
	c := envConfig{tenants: []string{"contoso"}, machines: 1, noStart: true}
	bind := onFirstCall(&c, func(c mdesim.Call) bool { return c.API == mde.APIOffboard && c.Status == http.StatusTooManyRequests },
		func(e *env) {
			if !takeOver(t, e, "r1") {
				t.Error("r1 had no calling entry during its 429")
			}
		})
	e := setup(t, c)
	bind(e)
	e.start()
	tt := e.tenants["contoso"]
	e.sim.InjectStatus(tt.tenantID, mde.APIOffboard, http.StatusTooManyRequests, "", "", 1, 2*time.Second)
	res := e.collect("mde.offboard.result.>")
	e.publish("mde.offboard.request.contoso", map[string]any{"requestId": "r1", "machineId": tt.machines[0].ID}, "contoso:r1")
	r := res.wait(t, 1, 30*time.Second)["contoso/r1"]
	eventually(t, 20*time.Second, "request stream empty", func() bool { return e.streamMsgs(offboard.StreamRequests) == 0 })
	wantAnsweredElsewhere(t, r, "r1")
	if n := e.offboardCalls(tt.tenantID, tt.machines[0].ID); n != 1 {
		t.Errorf("%d offboard calls, want 1 (the 429): the repeat went out after another worker took the request up", n)
	}
	if n := len(e.sim.Actions(tt.tenantID)); n != 0 {
		t.Errorf("%d actions, want none", n)
	}
}

// TestFirstAttemptAfterATakeOverIsNotSent: a request's first attempt is
// held after its "calling" entry is written. Of r0 and r1, under a budget
// of 1/1h, one is created and the other held (so its device read for the
// guards goes stale); the budget is raised, and while the held one reads
// its device again, r2's read is throttled (429, Retry-After 3 s), which
// pauses the tenant. Meanwhile another worker takes the held request up
// and answers it. Its first attempt, 3 s after its entry was written,
// finds the entry changed and is not sent.
func TestFirstAttemptAfterATakeOverIsNotSent(t *testing.T) {
	t.Parallel()
	var held atomic.Pointer[string] // the held request's device, once the budget is raised
	c := envConfig{tenants: []string{"contoso"}, machines: 3, noStart: true,
		extra: "    guards:\n      budget: \"1/1h\"\n      protect:\n        machineTags: [\"DoNotOffboard\"]\n"}
	bind := onFirstCall(&c, func(c mdesim.Call) bool {
		dev := held.Load()
		return dev != nil && c.API == mde.APIMachines && c.MachineID == *dev
	},
		func(e *env) {
			// The held request's device read again: the answer waits
			// until r2's read is throttled (the tenant paused for 3 s),
			// and another worker takes the request up meanwhile.
			tt := e.tenants["contoso"]
			id := "r0"
			if *held.Load() == tt.machines[1].ID {
				id = "r1"
			}
			e.sim.InjectStatus(tt.tenantID, mde.APIMachines, http.StatusTooManyRequests, "", "", 1, 3*time.Second)
			e.publish("mde.offboard.request.contoso", map[string]any{"requestId": "r2", "machineId": tt.machines[2].ID}, "contoso:r2")
			for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline) &&
				!slices.ContainsFunc(e.sim.Calls(), func(c mdesim.Call) bool { return c.Status == http.StatusTooManyRequests }); {
				time.Sleep(10 * time.Millisecond)
			}
			time.Sleep(300 * time.Millisecond) // the worker takes the pause in
			go func() {
				for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
					if takeOver(t, e, id) {
						return
					}
				}
				t.Errorf("%s wrote no calling entry during the pause", id)
			}()
		})
	e := setup(t, c)
	bind(e)
	e.start()
	tt := e.tenants["contoso"]
	res := e.collect("mde.offboard.result.>")
	e.publish("mde.offboard.request.contoso", map[string]any{"requestId": "r0", "machineId": tt.machines[0].ID}, "contoso:r0")
	e.publish("mde.offboard.request.contoso", map[string]any{"requestId": "r1", "machineId": tt.machines[1].ID}, "contoso:r1")
	first := res.wait(t, 1, 10*time.Second)
	id, dev := "r1", tt.machines[1].ID
	if len(first["contoso/r1"]) == 1 {
		id, dev = "r0", tt.machines[0].ID
	}
	time.Sleep(2 * time.Second) // the held request's device read goes stale
	held.Store(&dev)
	e.setBudget("contoso", "100/1h")
	wantAnsweredElsewhere(t, res.wait(t, 3, 30*time.Second)["contoso/"+id], id)
	if n := e.offboardCalls(tt.tenantID, dev); n != 0 {
		t.Errorf("%d offboard calls for %s's device, want none: another worker answered %s before its first attempt", n, id, id)
	}
}

// TestLoweredBudgetAfterAnUnknownAttempt: a call whose effect is unknown
// (a 503, or a 504 after which the action exists) counts in the budget
// whatever comes. A budget lowered meanwhile to 1/1h, already spent,
// sends no repeat: a repeat after a 503 that made nothing would be a
// second action in a window that allows one. The request waits with the
// budget's held requests; raised, the budget lets it go: after the 503 it
// calls again and is created, after the 504 it is created with the action
// its call made (shown 8 s late; a repeat, if it went out before the
// action showed, is refused as a duplicate by the API): one action each.
func TestLoweredBudgetAfterAnUnknownAttempt(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ status int }{{http.StatusServiceUnavailable}, {http.StatusGatewayTimeout}} {
		t.Run(http.StatusText(tc.status), func(t *testing.T) {
			t.Parallel()
			c := envConfig{tenants: []string{"contoso"}, machines: 2, noStart: true,
				extra: "    guards:\n      budget: \"100/1h\"\n", sim: mdesim.Options{ActionVisibleAfter: 8 * time.Second}}
			bind := onFirstCall(&c, func(c mdesim.Call) bool { return c.API == mde.APIOffboard && c.Status == tc.status },
				func(e *env) { e.setBudget("contoso", "1/1h") })
			e := setup(t, c)
			bind(e)
			e.opts.Retry = worker.RetryPolicy{Base: 200 * time.Millisecond, Max: time.Second}
			e.start()
			tt := e.tenants["contoso"]
			res := e.collect("mde.offboard.result.>")
			e.publish("mde.offboard.request.contoso", map[string]any{"requestId": "first", "machineId": tt.machines[1].ID}, "contoso:first")
			res.wait(t, 1, 10*time.Second)
			if tc.status == http.StatusGatewayTimeout {
				e.sim.LoseAnswers(tt.tenantID, 1)
			} else {
				e.sim.InjectStatus(tt.tenantID, mde.APIOffboard, tc.status, "", "", 1, 0)
			}
			e.publish("mde.offboard.request.contoso", map[string]any{"requestId": "x", "machineId": tt.machines[0].ID}, "contoso:x")
			time.Sleep(10 * time.Second) // past the action's lag
			if n := e.offboardCalls(tt.tenantID, tt.machines[0].ID); n != 1 {
				t.Errorf("%d offboard calls for x's device under a budget lowered to 1/1h and spent, want its one attempt", n)
			}
			e.setBudget("contoso", "100/1h")
			wantCreated(t, res.wait(t, 2, 30*time.Second)["contoso/x"], "") // once the budget was raised
			if n := e.offboardCalls(tt.tenantID, tt.machines[0].ID); n > 2 {
				t.Errorf("%d offboard calls for x's device, want at most 2", n)
			}
			if n := len(e.sim.Actions(tt.tenantID)); n != 2 {
				t.Errorf("%d actions, want 2", n)
			}
		})
	}
}

// TestCallsActionFinishedBeforeItShows: a worker died during its call,
// whose action lists do not show for 3 s. The request, delivered again,
// looks for it (not shown), and its call is refused as a duplicate
// (ActiveRequestAlreadyExists: the action is pending); the device takes
// the action before lists show it. The worker takes the action, finished,
// for the request's own and answers created with it, rather than fail for
// want of an unfinished one.
func TestCallsActionFinishedBeforeItShows(t *testing.T) {
	t.Parallel()
	const lag = 3 * time.Second
	var action atomic.Pointer[mde.Action]
	c := envConfig{tenants: []string{"contoso"}, machines: 1, noStart: true, ackWait: 2 * time.Second,
		sim: mdesim.Options{ActionVisibleAfter: lag}}
	bind := onFirstCall(&c, func(c mdesim.Call) bool { return c.API == mde.APIOffboard && c.Status == http.StatusBadRequest },
		func(e *env) {
			// The refusal is answered once the action shows, finished.
			a := action.Load()
			time.Sleep(time.Until(a.Created().Add(lag + 200*time.Millisecond)))
			e.sim.SetActionStatus(e.tenants["contoso"].tenantID, a.ID, "Succeeded")
		})
	e := setup(t, c)
	bind(e)
	e.start()
	tt := e.tenants["contoso"]
	res := e.collect("mde.offboard.result.>")
	a := deadWorkersCall(t, e)
	action.Store(&a)
	e.publish("mde.offboard.request.contoso", map[string]any{"requestId": "r1", "machineId": tt.machines[0].ID}, "contoso:r1")
	wantCreated(t, res.wait(t, 1, 30*time.Second)["contoso/r1"], a.ID)
	refused := slices.ContainsFunc(e.sim.Calls(), func(c mdesim.Call) bool { return c.API == mde.APIOffboard && c.Status == http.StatusBadRequest })
	if !refused {
		t.Error("no call was refused as a duplicate: the case is not the one this test is about")
	}
	if n := len(e.sim.Actions(tt.tenantID)); n != 1 {
		t.Errorf("%d actions, want 1", n)
	}
}

// TestLostAnswerWhileListsLagMakesNoSecondAction: the answer is lost, the
// device takes the action at once, and lists show it only 0.7 s after it
// was made. A repeat would not be refused (nothing pending) and would make
// a second action: the worker looks for its action a few times, with
// backoffs, before it repeats the call, and finds it.
func TestLostAnswerWhileListsLagMakesNoSecondAction(t *testing.T) {
	t.Parallel()
	e := setup(t, envConfig{tenants: []string{"contoso"}, machines: 1, noStart: true,
		sim: mdesim.Options{ActionVisibleAfter: 700 * time.Millisecond, ActionCompleteAfter: time.Millisecond}})
	// Backoffs of 150-300, 150-300, 300-600 and 600-1200 ms: the first
	// look comes before the action shows, the last after.
	e.opts.Retry = worker.RetryPolicy{Base: 300 * time.Millisecond, Max: 2 * time.Second}
	e.start()
	tt := e.tenants["contoso"]
	res := e.collect("mde.offboard.result.>")
	e.sim.LoseAnswers(tt.tenantID, 1)
	e.publish("mde.offboard.request.contoso", map[string]any{"requestId": "r1", "machineId": tt.machines[0].ID}, "contoso:r1")
	wantCreated(t, res.wait(t, 1, 30*time.Second)["contoso/r1"], "")
	if n := len(e.sim.Actions(tt.tenantID)); n != 1 {
		t.Errorf("%d actions after a lost answer, want 1", n)
	}
}

// TestLostAnswerLookThatFails: the answer is lost, and the list calls
// that look for the action fail (404 twice, an intermittent fault).
// The request is not answered failed while its action exists, its budget
// slot given back: it is taken again, finds its action and is created
// with it. A budget of 2/1h then lets one more request go, not two.
func TestLostAnswerLookThatFails(t *testing.T) {
	t.Parallel()
	c := envConfig{tenants: []string{"contoso"}, machines: 3, noStart: true,
		extra: "    guards:\n      budget: \"2/1h\"\n", sim: mdesim.Options{ActionVisibleAfter: 3 * time.Second}}
	bind := onFirstCall(&c, func(c mdesim.Call) bool { return c.API == mde.APIOffboard && c.Status == http.StatusGatewayTimeout },
		func(e *env) {
			e.sim.InjectStatus(e.tenants["contoso"].tenantID, mde.APIMachineActions, http.StatusNotFound, "ResourceNotFound", "not found", 2, 0)
		})
	e := setup(t, c)
	bind(e)
	e.start()
	tt := e.tenants["contoso"]
	res := e.collect("mde.offboard.result.>")
	e.sim.LoseAnswers(tt.tenantID, 1)
	e.publish("mde.offboard.request.contoso", map[string]any{"requestId": "r1", "machineId": tt.machines[0].ID}, "contoso:r1")
	wantCreated(t, res.wait(t, 1, 30*time.Second)["contoso/r1"], "") // with the action of the lost answer
	for i := 2; i <= 3; i++ {
		id := fmt.Sprintf("r%d", i)
		e.publish("mde.offboard.request.contoso", map[string]any{"requestId": id, "machineId": tt.machines[i-1].ID}, "contoso:"+id)
	}
	res.wait(t, 2, 30*time.Second)
	time.Sleep(3 * time.Second)
	if n := len(e.sim.Actions(tt.tenantID)); n != 2 {
		t.Errorf("%d actions under a budget of 2/1h, want 2", n)
	}
}

// TestRefusedRepeatLookThatFails: the answer is lost, lists show the
// action only after the looks before the repeat, the repeat is refused
// (ActiveRequestAlreadyExists), and the list call that looks for the
// pending action then fails (404). The request is taken again and is
// created with its action, not answered failed.
func TestRefusedRepeatLookThatFails(t *testing.T) {
	t.Parallel()
	c := envConfig{tenants: []string{"contoso"}, machines: 1, noStart: true, sim: mdesim.Options{ActionVisibleAfter: 5 * time.Second}}
	bind := onFirstCall(&c, func(c mdesim.Call) bool { return c.API == mde.APIOffboard && c.Status == http.StatusBadRequest },
		func(e *env) {
			e.sim.InjectStatus(e.tenants["contoso"].tenantID, mde.APIMachineActions, http.StatusNotFound, "ResourceNotFound", "not found", 1, 0)
		})
	e := setup(t, c)
	bind(e)
	e.opts.Retry = worker.RetryPolicy{Base: 100 * time.Millisecond, Max: time.Second}
	e.start()
	tt := e.tenants["contoso"]
	res := e.collect("mde.offboard.result.>")
	e.sim.LoseAnswers(tt.tenantID, 1)
	e.publish("mde.offboard.request.contoso", map[string]any{"requestId": "r1", "machineId": tt.machines[0].ID}, "contoso:r1")
	wantCreated(t, res.wait(t, 1, 30*time.Second)["contoso/r1"], "") // with the action of the lost answer
	if !slices.ContainsFunc(e.sim.Calls(), func(c mdesim.Call) bool { return c.API == mde.APIMachineActions && c.Status == http.StatusNotFound }) {
		t.Error("no list call failed: the case is not the one this test is about")
	}
	if n := len(e.sim.Actions(tt.tenantID)); n != 1 {
		t.Errorf("%d actions, want 1", n)
	}
}

// TestCrashedCallsActionShownLate: a worker died during its call, whose
// action the device took at once and lists show only 1 s after it was
// made. The request, delivered again, looks for it a few times before
// it calls, and finds it: a call would not have been refused (nothing
// pending) and would have made a second action.
func TestCrashedCallsActionShownLate(t *testing.T) {
	t.Parallel()
	e := setup(t, envConfig{tenants: []string{"contoso"}, machines: 1, noStart: true, ackWait: 2 * time.Second,
		sim: mdesim.Options{ActionVisibleAfter: time.Second}})
	// Backoffs of 150-300, 300-600 and 600-1200 ms: the last look comes
	// after the action shows.
	e.opts.Retry = worker.RetryPolicy{Base: 300 * time.Millisecond, Max: 2 * time.Second}
	e.start()
	tt := e.tenants["contoso"]
	res := e.collect("mde.offboard.result.>")
	a := deadWorkersCall(t, e)
	e.sim.SetActionStatus(tt.tenantID, a.ID, "Succeeded") // the device took it at once
	e.publish("mde.offboard.request.contoso", map[string]any{"requestId": "r1", "machineId": tt.machines[0].ID}, "contoso:r1")
	wantCreated(t, res.wait(t, 1, 30*time.Second)["contoso/r1"], a.ID)
	if n := len(e.sim.Actions(tt.tenantID)); n != 1 {
		t.Errorf("%d actions, want 1", n)
	}
}
