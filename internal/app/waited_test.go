package app

import (
	"testing"
	"time"

	"github.com/contoso-secops/mde-offboard/internal/campaign"
	"github.com/contoso-secops/mde-offboard/internal/control"
	"github.com/contoso-secops/mde-offboard/internal/mde"
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
		tenants: []string{"contoso"}, machines: n,
		extra: "    guards:\n" + guards + "      budget: \"1/1h\"\n",
	})
	res := e.collect("mde.offboard.result.>")
	e.offboardEach("contoso", "c", 0, n)
	eventually(t, 20*time.Second, "the first action", func() bool { return res.createdOf("contoso") == 1 })
	eventually(t, 10*time.Second, "the others held by the budget", func() bool {
		return gaugeOf(t, e.reg, "mde_offboard_held_requests", map[string]string{"tenant": "contoso", "reason": "budget"}) > 0
	})
	time.Sleep(2 * time.Second)
	return e, res
}

// offboardedSince returns the devices of contoso that got an action, and
// those that did not.
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
				m.MachineTags = []string{"DoNotOffboard"}
				e.sim.AddMachine(tt.tenantID, m)
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
		m.MachineTags = []string{"DoNotOffboard"}
		e.sim.AddMachine(tt.tenantID, m)
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
	e := setup(t, envConfig{tenants: []string{"contoso"}, machines: 6, extra: "    guards:\n      budget: \"2/1h\"\n"})
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
