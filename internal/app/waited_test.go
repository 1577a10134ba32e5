package app

import (
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/contoso-secops/mde-offboard/internal/campaign"
	"github.com/contoso-secops/mde-offboard/internal/control"
	"github.com/contoso-secops/mde-offboard/internal/mde"
	"github.com/contoso-secops/mde-offboard/internal/mde/mdesim"
	"github.com/contoso-secops/mde-offboard/internal/worker"
	"github.com/contoso-secops/mde-offboard/offboard"
)

// These tests hold requests inside the worker after they were taken (a
// spent budget, a 429's pause) and change something meanwhile: what
// decides whether the call goes out is checked again as it goes out.

// budgetHeld starts contoso with a budget of one action an hour, n
// devices and the guards given (YAML under guards:, may be empty), sends
// a request for each device, and returns once the first action exists and
// the others have waited for the budget long enough that the device they
// read for the guards is no longer fresh.
func budgetHeld(t *testing.T, n int, guards string) (*env, *collector) {
	t.Helper()
	e := setup(t, envConfig{
		tenants: []string{"contoso"}, machines: n, noStart: true,
		extra: "    guards:\n" + guards + "      budget: \"1/1h\"\n",
	})
	// The held requests are counted by the stats loop once no slot can
	// be taken: at its default 15 s period, the wait below could end
	// before a pass.
	e.opts.StatsEvery = 100 * time.Millisecond
	e.start()
	res := e.collect("mde.offboard.result.>")
	e.offboardEach("contoso", "c", 0, n)
	eventually(t, 20*time.Second, "the first action", func() bool { return res.createdOf("contoso") == 1 })
	eventually(t, 10*time.Second, "the others held by the budget", func() bool {
		return gaugeOf(t, e.reg, "mde_offboard_held_requests", map[string]string{"tenant": "contoso", "reason": "budget"}) > 0
	})
	time.Sleep(2 * time.Second)
	return e, res
}

// protect tags the device DoNotOffboard in Defender, as an analyst would
// in the portal.
func protect(e *env, m mdesim.Machine) {
	m.MachineTags = []string{"DoNotOffboard"}
	e.sim.AddMachine(e.tenants["contoso"].tenantID, m)
}

// offboarded returns the devices of contoso that got an action.
func offboarded(e *env) map[string]bool {
	done := map[string]bool{}
	for _, a := range e.sim.Actions(e.tenants["contoso"].tenantID) {
		done[a.MachineID] = true
	}
	return done
}

// TestGuardsJudgeTheDeviceAtItsCall: devices tagged DoNotOffboard while
// their requests wait for the budget, or for a 429's pause, are refused
// when the wait ends: the guards judge the device as Defender reports it
// when the call would go out, not as it was read before the wait.
func TestGuardsJudgeTheDeviceAtItsCall(t *testing.T) {
	t.Parallel()
	const tag = "        machineTags: [\"DoNotOffboard\"]\n"

	t.Run("budget", func(t *testing.T) {
		t.Parallel()
		e, res := budgetHeld(t, 4, "      protect:\n"+tag)
		tt := e.tenants["contoso"]
		before := offboarded(e)
		for _, m := range tt.machines {
			if !before[m.ID] {
				protect(e, m)
			}
		}
		e.setBudget("contoso", "100/1h")
		got := res.wait(t, 4, 20*time.Second)
		if after := offboarded(e); len(after) != 1 {
			t.Errorf("%d devices offboarded, want only the one offboarded before the others were tagged", len(after))
		}
		for key, rs := range got {
			r := rs[len(rs)-1]
			if before[r.MachineID] {
				continue
			}
			if r.Error == nil || r.Error.Code != offboard.CodeBlockedByPolicy || r.Error.Rule != offboard.RuleMachineTags {
				t.Errorf("%s: %s %+v, want blocked_by_policy by %s", key, r.Outcome, r.Error, offboard.RuleMachineTags)
			}
		}
	})

	t.Run("429", func(t *testing.T) {
		t.Parallel()
		e := setup(t, envConfig{tenants: []string{"contoso"}, machines: 1, extra: "    guards:\n      protect:\n" + tag})
		res := e.collect("mde.offboard.result.>")
		tt := e.tenants["contoso"]
		m := tt.machines[0]
		e.sim.InjectStatus(tt.tenantID, mde.APIOffboard, 429, "429", "API calls quota exceeded! maximum allowed 100 per 00:01:00", 1, 3*time.Second)
		e.offboardEach("contoso", "c", 0, 1)
		eventually(t, 10*time.Second, "the throttled call", func() bool { return e.offboardCalls(tt.tenantID, m.ID) == 1 })
		protect(e, m)
		r := res.wait(t, 1, 20*time.Second)["contoso/c0"][0]
		if r.Error == nil || r.Error.Code != offboard.CodeBlockedByPolicy {
			t.Errorf("result %s %+v, want blocked_by_policy", r.Outcome, r.Error)
		}
		if n := e.offboardCalls(tt.tenantID, m.ID); n != 1 {
			t.Errorf("%d offboard calls, want only the throttled one", n)
		}
	})
}

// TestPauseHoldsRequestsWaitingInTheWorker: a pause stops the calls of
// requests already taken (waiting for the budget, or for a 429's pause):
// none goes out while it lasts; they go back to the stream and are
// answered after the resume.
func TestPauseHoldsRequestsWaitingInTheWorker(t *testing.T) {
	t.Parallel()
	check := func(t *testing.T, e *env, res *collector, n int, raise func()) {
		t.Helper()
		paused := e.control(control.ActionPause, "contoso", control.PriorityAll)
		time.Sleep(time.Second) // the contract's time for a control to take effect
		raise()
		time.Sleep(3 * time.Second)
		if late := e.offboardCallsSince("contoso", paused.Add(time.Second)); len(late) > 0 {
			t.Errorf("%d offboard calls while contoso was paused, the first %v after the pause", len(late), late[0].Sub(paused))
		}
		e.control(control.ActionResume, "contoso", control.PriorityAll)
		res.wait(t, n, 30*time.Second)
		if created := res.createdOf("contoso"); created != n {
			t.Errorf("%d of %d created after the resume", created, n)
		}
	}

	t.Run("budget", func(t *testing.T) {
		t.Parallel()
		e, res := budgetHeld(t, 4, "")
		check(t, e, res, 4, func() { e.setBudget("contoso", "100/1h") })
	})

	t.Run("429", func(t *testing.T) {
		t.Parallel()
		e := setup(t, envConfig{tenants: []string{"contoso"}, machines: 4})
		res := e.collect("mde.offboard.result.>")
		tt := e.tenants["contoso"]
		e.sim.InjectStatus(tt.tenantID, mde.APIOffboard, 429, "429", "API calls quota exceeded! maximum allowed 100 per 00:01:00", 1, 2*time.Second)
		e.offboardEach("contoso", "c", 0, 4)
		eventually(t, 10*time.Second, "the throttled call", func() bool { return len(e.offboardCallsSince("contoso", time.Time{})) >= 1 })
		check(t, e, res, 4, func() {})
	})
}

// TestCancelWithdrawsRequestsWaitingInTheWorker: a campaign cancelled
// while its requests wait in the worker for the budget gets them answered
// cancelled, with no call, when the budget is raised.
func TestCancelWithdrawsRequestsWaitingInTheWorker(t *testing.T) {
	t.Parallel()
	e := setup(t, envConfig{tenants: []string{"contoso"}, machines: 6, noStart: true, extra: "    guards:\n      budget: \"2/1h\"\n"})
	e.opts.StatsEvery = 100 * time.Millisecond // as in budgetHeld
	e.start()
	res := e.collect("mde.offboard.result.>")
	for i, m := range e.tenants["contoso"].machines {
		id := campaign.RequestID("wave1", i+1)
		e.publish("mde.offboard.request.contoso.bulk", map[string]any{"requestId": id, "machineId": m.ID, "source": campaign.Source("wave1")}, "contoso:"+id)
	}
	eventually(t, 20*time.Second, "two actions", func() bool { return res.createdOf("contoso") == 2 })
	eventually(t, 10*time.Second, "the others held by the budget", func() bool {
		return gaugeOf(t, e.reg, "mde_offboard_held_requests", map[string]string{"tenant": "contoso", "reason": "budget"}) > 0
	})
	kv, err := campaign.ControlBucket(t.Context(), e.js)
	if err != nil {
		t.Fatal(err)
	}
	if err := campaign.SetMark(t.Context(), kv, "contoso", "wave1", campaign.Mark{Cancelled: true, By: "op", At: time.Now()}); err != nil {
		t.Fatal(err)
	}
	time.Sleep(time.Second) // the contract's time for a control to take effect
	e.setBudget("contoso", "100/1h")
	got := res.wait(t, 6, 20*time.Second)
	created, cancelled := 0, 0
	for _, rs := range got {
		switch r := rs[len(rs)-1]; {
		case r.Outcome == offboard.OutcomeCreated:
			created++
		case r.Error != nil && r.Error.Code == offboard.CodeCancelled:
			cancelled++
		}
	}
	if created != 2 || cancelled != 4 {
		t.Errorf("%d created and %d cancelled, want the 2 created before the cancel and 4 cancelled", created, cancelled)
	}
	if n := len(e.sim.Actions(e.tenants["contoso"].tenantID)); n != 2 {
		t.Errorf("%d actions, want 2", n)
	}
}

// heldBehindAThrottle starts contoso with two devices and the guards
// given, and sends a request for each: the first one's call is answered
// 429 (Retry-After 4 s) while the second one's device read is held back,
// so that the second takes its place in the quota, then waits out the
// pause before its call. It returns once the pause is in force and the
// second request is waiting; the test changes something then.
func heldBehindAThrottle(t *testing.T, guards string) (*env, *collector) {
	t.Helper()
	var (
		ep      atomic.Pointer[env]
		second  atomic.Value
		holding sync.Once
	)
	e := setup(t, envConfig{tenants: []string{"contoso"}, machines: 2, extra: guards,
		sim: mdesim.Options{OnCall: func(c mdesim.Call) {
			if id, _ := second.Load().(string); c.API != mde.APIMachines || c.MachineID != id {
				return
			}
			holding.Do(func() {
				e := ep.Load()
				for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
					if slices.ContainsFunc(e.sim.Calls(), func(c mdesim.Call) bool { return c.API == mde.APIOffboard && c.Status == 429 }) {
						time.Sleep(300 * time.Millisecond) // the worker takes the pause in
						return
					}
				}
			})
		}}})
	ep.Store(e)
	tt := e.tenants["contoso"]
	second.Store(tt.machines[1].ID)
	res := e.collect("mde.offboard.result.>")
	e.sim.InjectStatus(tt.tenantID, mde.APIOffboard, 429, "429", "API calls quota exceeded! maximum allowed 100 per 00:01:00", 1, 4*time.Second)
	e.offboardEach("contoso", "c", 0, 2)
	eventually(t, 10*time.Second, "the throttled call", func() bool { return len(e.offboardCallsSince("contoso", time.Time{})) >= 1 })
	time.Sleep(500 * time.Millisecond)
	return e, res
}

// TestChecksAfterWaitingOutAThrottle: a request whose first call waits
// out another request's 429 (its place taken before the 429 came) is
// checked again before that call: a pause meanwhile sends it back, a
// device tagged meanwhile is refused.
func TestChecksAfterWaitingOutAThrottle(t *testing.T) {
	t.Parallel()
	const guards = "    guards:\n      protect:\n        machineTags: [\"DoNotOffboard\"]\n"

	t.Run("pause", func(t *testing.T) {
		t.Parallel()
		e, res := heldBehindAThrottle(t, guards)
		paused := e.control(control.ActionPause, "contoso", control.PriorityAll)
		time.Sleep(5 * time.Second) // past the 429's pause
		if late := e.offboardCallsSince("contoso", paused.Add(time.Second)); len(late) > 0 {
			t.Errorf("%d offboard calls while contoso was paused, the first %v after the pause", len(late), late[0].Sub(paused))
		}
		e.control(control.ActionResume, "contoso", control.PriorityAll)
		res.wait(t, 2, 30*time.Second)
		if n := res.createdOf("contoso"); n != 2 {
			t.Errorf("%d created after the resume, want 2", n)
		}
	})

	t.Run("guard", func(t *testing.T) {
		t.Parallel()
		e, res := heldBehindAThrottle(t, guards)
		tt := e.tenants["contoso"]
		m := tt.machines[1]
		protect(e, m)
		r := res.wait(t, 2, 30*time.Second)["contoso/c1"][0]
		if r.Error == nil || r.Error.Code != offboard.CodeBlockedByPolicy {
			t.Errorf("c1: %s %+v, want blocked_by_policy", r.Outcome, r.Error)
		}
		if n := e.offboardCalls(tt.tenantID, m.ID); n != 0 {
			t.Errorf("%d offboard calls of the device tagged while its request waited, want 0", n)
		}
	})

	// Both requests hold a slot of a 100/1h budget when it is lowered to
	// 1/1h: one action, not two; raised again, the other goes.
	t.Run("budget", func(t *testing.T) {
		t.Parallel()
		e, res := heldBehindAThrottle(t, guards+"      budget: \"100/1h\"\n")
		budgetHoldsTheWaiting(t, e, res, "lowered")
	})
}

// budgetHoldsTheWaiting sets contoso's budget to 1/1h while two of its
// requests wait out a 429's pause (heldBehindAThrottle): one action, not
// two; raised to 100/1h, the other goes. how says what became of the
// budget, for the messages.
func budgetHoldsTheWaiting(t *testing.T, e *env, res *collector, how string) {
	t.Helper()
	set := time.Now()
	e.setBudget("contoso", "1/1h")
	res.wait(t, 1, 30*time.Second)
	time.Sleep(6 * time.Second) // past the 429's pause: a request handed back would have come back
	if n := res.createdOf("contoso"); n != 1 {
		t.Errorf("%d created under a budget %s to 1/1h while they waited, want 1", n, how)
	}
	if calls := e.offboardCallsSince("contoso", set.Add(time.Second)); len(calls) > 1 {
		t.Errorf("%d offboard calls after the budget was %s to 1/1h, want at most 1", len(calls), how)
	}
	e.setBudget("contoso", "100/1h")
	res.wait(t, 2, 30*time.Second)
	if n := res.createdOf("contoso"); n != 2 {
		t.Errorf("%d created after the budget was raised, want 2", n)
	}
}

// TestBudgetSetWhileRequestsWaitOutAThrottle: a budget set (offboardctl
// budget) on a tenant that had none, while two requests wait out a 429's
// pause past the point where a slot would have been taken, holds their
// calls too: one action, not two; raised, the other goes.
func TestBudgetSetWhileRequestsWaitOutAThrottle(t *testing.T) {
	t.Parallel()
	// A guard that reads the device: heldBehindAThrottle holds the
	// second request's read so that it waits out the 429 too. Without
	// it, that request went straight to its call and was created before
	// the budget was set, which a budget set later does not count.
	e, res := heldBehindAThrottle(t, "    guards:\n      protect:\n        machineTags: [\"DoNotOffboard\"]\n")
	budgetHoldsTheWaiting(t, e, res, "set")
}

// TestPauseAfterAThrottleSpendsNoBudget: a request throttled (429), then
// paused while it waits, goes back to the stream without spending its
// budget slot: a 429 created no action. After the resume it is created
// with the tenant's one slot.
func TestPauseAfterAThrottleSpendsNoBudget(t *testing.T) {
	t.Parallel()
	e := setup(t, envConfig{tenants: []string{"contoso"}, machines: 1, extra: "    guards:\n      budget: \"1/1h\"\n"})
	res := e.collect("mde.offboard.result.>")
	tt := e.tenants["contoso"]
	e.sim.InjectStatus(tt.tenantID, mde.APIOffboard, 429, "429", "API calls quota exceeded! maximum allowed 100 per 00:01:00", 1, 3*time.Second)
	e.offboardEach("contoso", "c", 0, 1)
	eventually(t, 10*time.Second, "the throttled call", func() bool { return len(e.offboardCallsSince("contoso", time.Time{})) == 1 })
	e.control(control.ActionPause, "contoso", control.PriorityAll)
	time.Sleep(4 * time.Second) // past the 429's pause: the request goes back
	e.control(control.ActionResume, "contoso", control.PriorityAll)
	res.wait(t, 1, 20*time.Second)
	if n := res.createdOf("contoso"); n != 1 {
		t.Errorf("%d created, want the request created after the resume with the budget's one slot", n)
	}
}

// lostAnswerThen sends one request whose offboard call creates the action
// but loses its answer (504), the action showing in lists only after lag;
// meanwhile runs as the 504 is answered, before the call is looked for
// and repeated.
func lostAnswerThen(t *testing.T, extra string, lag time.Duration, meanwhile func(*env)) (*env, offboard.Result) {
	t.Helper()
	return lostAnswerOf(t, "machineId", extra, lag, meanwhile)
}

// lostAnswerOf is lostAnswerThen with the request naming its device by
// the given field: "machineId" or "computerDnsName".
func lostAnswerOf(t *testing.T, by, extra string, lag time.Duration, meanwhile func(*env)) (*env, offboard.Result) {
	t.Helper()
	var (
		ep   atomic.Pointer[env]
		once sync.Once
	)
	e := setup(t, envConfig{tenants: []string{"contoso"}, machines: 1, extra: extra, noStart: true,
		sim: mdesim.Options{ActionVisibleAfter: lag, OnCall: func(c mdesim.Call) {
			if c.API == mde.APIOffboard && c.Status == http.StatusGatewayTimeout {
				once.Do(func() { meanwhile(ep.Load()) })
			}
		}}})
	// Backoffs of 100-200, 200-400 and 400-800 ms: the look right after
	// the lost answer comes within 400 ms of it, the last look for the
	// action after a repeat refused ActiveRequestAlreadyExists at least
	// 700 ms after that.
	e.opts.Retry = worker.RetryPolicy{Base: 200 * time.Millisecond, Max: time.Second}
	e.start()
	ep.Store(e)
	tt := e.tenants["contoso"]
	e.sim.LoseAnswers(tt.tenantID, 1)
	res := e.collect("mde.offboard.result.>")
	id := campaign.RequestID("wave1", 1)
	device := tt.machines[0].ID
	if by == "computerDnsName" {
		device = tt.machines[0].ComputerDNSName
	}
	e.publish("mde.offboard.request.contoso.bulk", map[string]any{"requestId": id, by: device, "source": campaign.Source("wave1")}, "contoso:"+id)
	return e, res.wait(t, 1, 30*time.Second)["contoso/"+id][0]
}

// TestLostAnswerStandsOverCancelAndGuards: once a call whose answer was
// lost may have created the action, a cancel or a guard's refusal that
// comes before the call is repeated does not become the result: the
// action is found and the request is created, its budget slot spent.
func TestLostAnswerStandsOverCancelAndGuards(t *testing.T) {
	t.Parallel()

	t.Run("cancel", func(t *testing.T) {
		t.Parallel()
		// The action shows after the first look, before the last.
		e, r := lostAnswerThen(t, "    guards:\n      budget: \"1/1h\"\n", 600*time.Millisecond, func(e *env) {
			kv, err := campaign.ControlBucket(e.t.Context(), e.js)
			if err == nil {
				err = campaign.SetMark(e.t.Context(), kv, "contoso", "wave1", campaign.Mark{Cancelled: true, By: "op", At: time.Now()})
			}
			if err != nil {
				e.t.Error(err)
			}
			time.Sleep(200 * time.Millisecond) // the cancel reaches the worker
		})
		if r.Outcome != offboard.OutcomeCreated && r.Outcome != offboard.OutcomeAlreadyPending {
			t.Errorf("result %s %+v, want the action of the lost answer", r.Outcome, r.Error)
		}
		if left := gaugeOf(t, e.reg, "mde_offboard_budget_remaining", map[string]string{"tenant": "contoso"}); left != 0 {
			t.Errorf("budget left %v, want 0: the action counts", left)
		}
	})

	t.Run("guard", func(t *testing.T) {
		t.Parallel()
		// The action shows after the repeat is refused by the guard, and
		// after the request is first taken again (5 s): it is taken
		// again until the action shows.
		e, r := lostAnswerThen(t, "    guards:\n      protect:\n        machineTags: [\"DoNotOffboard\"]\n", 7*time.Second, func(e *env) {
			protect(e, e.tenants["contoso"].machines[0])
			time.Sleep(1500 * time.Millisecond) // the device read is stale by the repeat
		})
		if r.Outcome != offboard.OutcomeCreated {
			t.Errorf("result %s %+v, want the action of the lost answer", r.Outcome, r.Error)
		}
		if n := len(e.sim.Actions(e.tenants["contoso"].tenantID)); n != 1 {
			t.Errorf("%d actions, want 1", n)
		}
	})
}

// TestLostAnswerByNameStaysOnItsDevice: a request by name whose call's
// answer was lost is taken again (a guard refuses the device as the call
// would be repeated) after its name has come to name another device, or
// a second one (the device re-onboarded, the name reused). It is kept on
// the device its call went to, by the ledger's "calling" entry, and not
// resolved again: its action there is found and it is created, with that
// device's id; no call goes to the other record. Resolved again, it
// offboarded the new record too (two actions for one request), or was
// answered ambiguous_machine while its action existed.
func TestLostAnswerByNameStaysOnItsDevice(t *testing.T) {
	t.Parallel()
	const guards = "    guards:\n      protect:\n        machineTags: [\"DoNotOffboard\"]\n"
	for _, tc := range []struct {
		name string
		// move changes the device records as the answer is lost: the
		// first device is tagged, so that the repeat is refused and the
		// request taken again.
		move func(e *env, m mdesim.Machine, other string)
	}{
		{"renamed", func(e *env, m mdesim.Machine, other string) {
			name := m.ComputerDNSName
			m.ComputerDNSName = "old-" + name
			protect(e, m)
			e.sim.AddMachine(e.tenants["contoso"].tenantID, mdesim.Machine{ID: other, ComputerDNSName: name, LastSeen: time.Now().Add(-time.Hour)})
		}},
		{"ambiguous", func(e *env, m mdesim.Machine, other string) {
			protect(e, m)
			e.sim.AddMachine(e.tenants["contoso"].tenantID, mdesim.Machine{ID: other, ComputerDNSName: m.ComputerDNSName, LastSeen: time.Now()})
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			other := newID()
			e, r := lostAnswerOf(t, "computerDnsName", guards, 7*time.Second, func(e *env) {
				tc.move(e, e.tenants["contoso"].machines[0], other)
				time.Sleep(1500 * time.Millisecond) // the device read is stale by the repeat
			})
			tt := e.tenants["contoso"]
			m := tt.machines[0]
			if r.Outcome != offboard.OutcomeCreated || r.MachineID != m.ID || r.ComputerDNSName != m.ComputerDNSName {
				t.Errorf("result %s for %s (%s) %+v, want created for %s (%s): the action of the lost answer", r.Outcome, r.MachineID, r.ComputerDNSName, r.Error, m.ID, m.ComputerDNSName)
			}
			if n := e.offboardCalls(tt.tenantID, other); n != 0 {
				t.Errorf("%d offboard calls of the other record, want 0", n)
			}
			if n := len(e.sim.Actions(tt.tenantID)); n != 1 {
				t.Errorf("%d actions for one request, want 1", n)
			}
		})
	}
}
