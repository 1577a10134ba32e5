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

// TestRepeatAfterATakeOverIsNotSent: a request's call is throttled (429,
// Retry-After 2 s), and while this worker waits out the pause another
// takes the request up (as it does when this one is frozen past its
// presence's lease): it writes the request's ledger entry and answers it.
// This worker does not send its call again: it finds the entry changed,
// and the request is answered from the ledger. One offboard call (the
// 429), no action, one result.
func TestRepeatAfterATakeOverIsNotSent(t *testing.T) {
	t.Parallel()
	var (
		ep   atomic.Pointer[env]
		once sync.Once
	)
	answer := []byte(`{"requestId":"r1","tenant":"contoso","outcome":"failed","attempt":1,"error":{"code":"api_error","message":"answered by another worker"}}`)
	e := setup(t, envConfig{tenants: []string{"contoso"}, machines: 1, noStart: true,
		sim: mdesim.Options{OnCall: func(c mdesim.Call) {
			if c.API != mde.APIOffboard || c.Status != http.StatusTooManyRequests {
				return
			}
			once.Do(func() {
				e := ep.Load()
				ledger, err := queue.NewLedger(t.Context(), e.js)
				if err != nil {
					t.Error(err)
					return
				}
				entry, err := ledger.Get(t.Context(), "contoso", "r1")
				if err != nil || entry == nil || entry.State != queue.StateCalling {
					t.Errorf("ledger entry of r1 during its 429: %+v, %v; want a calling entry", entry, err)
					return
				}
				if err := ledger.Finish(t.Context(), "contoso", "r1", entry, entry.Seq, answer); err != nil {
					t.Error(err)
				}
			})
		}}})
	e.start()
	ep.Store(e)
	tt := e.tenants["contoso"]
	e.sim.InjectStatus(tt.tenantID, mde.APIOffboard, http.StatusTooManyRequests, "", "", 1, 2*time.Second)
	res := e.collect("mde.offboard.result.>")
	e.publish("mde.offboard.request.contoso", map[string]any{"requestId": "r1", "machineId": tt.machines[0].ID}, "contoso:r1")
	r := res.wait(t, 1, 30*time.Second)["contoso/r1"]
	eventually(t, 20*time.Second, "request stream empty", func() bool { return e.streamMsgs(offboard.StreamRequests) == 0 })
	if len(r) != 1 || r[0].Error == nil || r[0].Error.Message != "answered by another worker" {
		for _, x := range r {
			t.Errorf("result of r1: %s %+v", x.Outcome, x.Error)
		}
		t.Errorf("%d results of r1, want the other worker's, once", len(r))
	}
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
	var (
		ep   atomic.Pointer[env]
		held atomic.Pointer[string] // the held request's device, once the budget is raised
		once sync.Once
	)
	answer := func(id string) []byte {
		return []byte(`{"requestId":"` + id + `","tenant":"contoso","outcome":"failed","attempt":1,"error":{"code":"api_error","message":"answered by another worker"}}`)
	}
	e := setup(t, envConfig{tenants: []string{"contoso"}, machines: 3, noStart: true,
		extra: "    guards:\n      budget: \"1/1h\"\n      protect:\n        machineTags: [\"DoNotOffboard\"]\n",
		sim: mdesim.Options{OnCall: func(c mdesim.Call) {
			dev := held.Load()
			if dev == nil || c.API != mde.APIMachines || c.MachineID != *dev {
				return
			}
			once.Do(func() {
				// The held request's device read again: the answer waits
				// until r2's read is throttled (the tenant paused for
				// 3 s), and another worker takes the request up meanwhile.
				e := ep.Load()
				tt := e.tenants["contoso"]
				id := "r0"
				if *dev == tt.machines[1].ID {
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
					ledger, err := queue.NewLedger(t.Context(), e.js)
					if err != nil {
						t.Error(err)
						return
					}
					for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
						entry, err := ledger.Get(t.Context(), "contoso", id)
						if err == nil && entry != nil && entry.State == queue.StateCalling {
							if err := ledger.Finish(t.Context(), "contoso", id, entry, entry.Seq, answer(id)); err != nil {
								t.Error(err)
							}
							return
						}
					}
					t.Errorf("%s wrote no calling entry during the pause", id)
				}()
			})
		}}})
	e.start()
	ep.Store(e)
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
	got := res.wait(t, 3, 30*time.Second)
	if r := got["contoso/"+id]; len(r) != 1 || r[0].Error == nil || r[0].Error.Message != "answered by another worker" {
		for _, x := range r {
			t.Errorf("result of %s: %s %+v", id, x.Outcome, x.Error)
		}
		t.Errorf("%d results of %s, want the other worker's, once", len(r), id)
	}
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
			var (
				ep   atomic.Pointer[env]
				once sync.Once
			)
			e := setup(t, envConfig{tenants: []string{"contoso"}, machines: 2, noStart: true,
				extra: "    guards:\n      budget: \"100/1h\"\n",
				sim: mdesim.Options{ActionVisibleAfter: 8 * time.Second, OnCall: func(c mdesim.Call) {
					if c.API == mde.APIOffboard && c.Status == tc.status {
						once.Do(func() { ep.Load().setBudget("contoso", "1/1h") })
					}
				}}})
			e.opts.Retry = worker.RetryPolicy{Base: 200 * time.Millisecond, Max: time.Second}
			e.start()
			ep.Store(e)
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
			if r := res.wait(t, 2, 30*time.Second)["contoso/x"]; len(r) != 1 || r[0].Outcome != offboard.OutcomeCreated {
				t.Errorf("results of x: %+v, want created once the budget was raised", r)
			}
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
	var (
		ep     atomic.Pointer[env]
		action atomic.Pointer[mde.Action]
		once   sync.Once
	)
	e := setup(t, envConfig{tenants: []string{"contoso"}, machines: 1, noStart: true, ackWait: 2 * time.Second,
		sim: mdesim.Options{ActionVisibleAfter: lag, OnCall: func(c mdesim.Call) {
			if c.API != mde.APIOffboard || c.Status != http.StatusBadRequest {
				return
			}
			once.Do(func() {
				// The refusal is answered once the action shows, finished.
				a := action.Load()
				time.Sleep(time.Until(a.Created().Add(lag + 200*time.Millisecond)))
				e := ep.Load()
				e.sim.SetActionStatus(e.tenants["contoso"].tenantID, a.ID, "Succeeded")
			})
		}}})
	e.start()
	ep.Store(e)
	tt := e.tenants["contoso"]
	m := tt.machines[0]
	res := e.collect("mde.offboard.result.>")
	a := e.offboardAsTheWorker(e.app.tenants[0], config.CommentData{RequestID: "r1", Tenant: "contoso", MachineID: m.ID})
	action.Store(&a)
	ledger, err := queue.NewLedger(t.Context(), e.js)
	if err != nil {
		t.Fatal(err)
	}
	if err := ledger.Put(t.Context(), "contoso", "r1", nil, &queue.Entry{
		// An entry of a release before entries named their writer, older
		// than the ack wait: the call is not taken to be under way.
		State: queue.StateCalling, Seq: 1, MachineID: m.ID, Started: time.Now().Add(-3 * time.Second),
	}); err != nil {
		t.Fatal(err)
	}
	e.publish("mde.offboard.request.contoso", map[string]any{"requestId": "r1", "machineId": m.ID}, "contoso:r1")
	r := res.wait(t, 1, 30*time.Second)["contoso/r1"]
	var got struct{ ID string }
	if len(r) == 1 {
		_ = json.Unmarshal(r[0].MachineAction, &got)
	}
	if len(r) != 1 || r[0].Outcome != offboard.OutcomeCreated || got.ID != a.ID {
		for _, x := range r {
			t.Errorf("result: %s %+v", x.Outcome, x.Error)
		}
		t.Errorf("want created with the dead worker's action %s", a.ID)
	}
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
	r := res.wait(t, 1, 30*time.Second)["contoso/r1"]
	if len(r) != 1 || r[0].Outcome != offboard.OutcomeCreated {
		t.Errorf("results: %+v, want created", r)
	}
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
	var (
		ep   atomic.Pointer[env]
		once sync.Once
	)
	e := setup(t, envConfig{tenants: []string{"contoso"}, machines: 3, noStart: true,
		extra: "    guards:\n      budget: \"2/1h\"\n",
		sim: mdesim.Options{ActionVisibleAfter: 3 * time.Second, OnCall: func(c mdesim.Call) {
			if c.API == mde.APIOffboard && c.Status == http.StatusGatewayTimeout {
				once.Do(func() {
					e := ep.Load()
					e.sim.InjectStatus(e.tenants["contoso"].tenantID, mde.APIMachineActions, http.StatusNotFound, "ResourceNotFound", "not found", 2, 0)
				})
			}
		}}})
	e.start()
	ep.Store(e)
	tt := e.tenants["contoso"]
	res := e.collect("mde.offboard.result.>")
	e.sim.LoseAnswers(tt.tenantID, 1)
	e.publish("mde.offboard.request.contoso", map[string]any{"requestId": "r1", "machineId": tt.machines[0].ID}, "contoso:r1")
	r := res.wait(t, 1, 30*time.Second)["contoso/r1"]
	if len(r) != 1 || r[0].Outcome != offboard.OutcomeCreated {
		for _, x := range r {
			t.Errorf("result: %s %+v", x.Outcome, x.Error)
		}
		t.Error("want created with the action of the lost answer")
	}
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
	var (
		ep   atomic.Pointer[env]
		once sync.Once
	)
	e := setup(t, envConfig{tenants: []string{"contoso"}, machines: 1, noStart: true,
		sim: mdesim.Options{ActionVisibleAfter: 5 * time.Second, OnCall: func(c mdesim.Call) {
			if c.API == mde.APIOffboard && c.Status == http.StatusBadRequest {
				once.Do(func() {
					e := ep.Load()
					e.sim.InjectStatus(e.tenants["contoso"].tenantID, mde.APIMachineActions, http.StatusNotFound, "ResourceNotFound", "not found", 1, 0)
				})
			}
		}}})
	e.opts.Retry = worker.RetryPolicy{Base: 100 * time.Millisecond, Max: time.Second}
	e.start()
	ep.Store(e)
	tt := e.tenants["contoso"]
	res := e.collect("mde.offboard.result.>")
	e.sim.LoseAnswers(tt.tenantID, 1)
	e.publish("mde.offboard.request.contoso", map[string]any{"requestId": "r1", "machineId": tt.machines[0].ID}, "contoso:r1")
	r := res.wait(t, 1, 30*time.Second)["contoso/r1"]
	if len(r) != 1 || r[0].Outcome != offboard.OutcomeCreated {
		for _, x := range r {
			t.Errorf("result: %s %+v", x.Outcome, x.Error)
		}
		t.Error("want created with the action of the lost answer")
	}
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
	m := tt.machines[0]
	res := e.collect("mde.offboard.result.>")
	ledger, err := queue.NewLedger(t.Context(), e.js)
	if err != nil {
		t.Fatal(err)
	}
	if err := ledger.Put(t.Context(), "contoso", "r1", nil, &queue.Entry{
		// An entry of a release before entries named their writer, older
		// than the ack wait: the call is not taken to be under way.
		State: queue.StateCalling, Seq: 1, MachineID: m.ID, Started: time.Now().Add(-3 * time.Second),
	}); err != nil {
		t.Fatal(err)
	}
	a := e.offboardAsTheWorker(e.app.tenants[0], config.CommentData{RequestID: "r1", Tenant: "contoso", MachineID: m.ID})
	e.sim.SetActionStatus(tt.tenantID, a.ID, "Succeeded") // the device took it at once
	e.publish("mde.offboard.request.contoso", map[string]any{"requestId": "r1", "machineId": m.ID}, "contoso:r1")
	r := res.wait(t, 1, 30*time.Second)["contoso/r1"]
	var got struct{ ID string }
	if len(r) == 1 {
		_ = json.Unmarshal(r[0].MachineAction, &got)
	}
	if len(r) != 1 || r[0].Outcome != offboard.OutcomeCreated || got.ID != a.ID {
		t.Errorf("%d results, created with %q; want created with the dead worker's action %s", len(r), got.ID, a.ID)
	}
	if n := len(e.sim.Actions(tt.tenantID)); n != 1 {
		t.Errorf("%d actions, want 1", n)
	}
}
