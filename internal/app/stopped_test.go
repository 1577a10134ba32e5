package app

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/contoso-secops/mde-offboard/internal/campaign"
	"github.com/contoso-secops/mde-offboard/internal/config"
	"github.com/contoso-secops/mde-offboard/internal/mde"
	"github.com/contoso-secops/mde-offboard/internal/mde/mdesim"
	"github.com/contoso-secops/mde-offboard/internal/queue"
	"github.com/contoso-secops/mde-offboard/internal/worker"
	"github.com/contoso-secops/mde-offboard/offboard"
)

// callOfAStoppedReplica: a replica that stopped wrote "calling" (dated
// started from now, by its clock) for the request's own message, and its
// call created an action that lists show only after lag (call false: no
// call went out). before runs, then the request is delivered.
func callOfAStoppedReplica(t *testing.T, extra string, lag, started time.Duration, call bool, before func(*env)) (*env, offboard.Result, string) {
	t.Helper()
	return callOfAStoppedReplicaWithin(t, extra, lag, started, call, 0, before)
}

// callOfAStoppedReplicaWithin is callOfAStoppedReplica with the time a new
// action may take to show in lists (0: the default, a minute).
func callOfAStoppedReplicaWithin(t *testing.T, extra string, lag, started time.Duration, call bool, shows time.Duration, before func(*env)) (*env, offboard.Result, string) {
	t.Helper()
	e := setup(t, envConfig{machines: 1, tenants: []string{"contoso"}, ackWait: 2 * time.Second, extra: extra, noStart: true,
		sim: mdesim.Options{ActionVisibleAfter: lag}})
	e.opts.ActionShowsWithin = shows
	e.start()
	c := e.collect("mde.offboard.result.>")
	tt := e.tenants["contoso"]
	m := tt.machines[0]
	id := campaign.RequestID("wave1", 1)
	a := e.app.tenants[0]
	actionID := ""
	if call {
		actionID = e.offboardAsTheWorker(a, config.CommentData{RequestID: id, Source: campaign.Source("wave1"), Tenant: "contoso", MachineID: m.ID}).ID
	}
	e.putForNextRequest(t, id, &queue.Entry{State: queue.StateCalling, MachineID: m.ID, Started: time.Now().Add(started), Writer: "dead-replica"})
	if before != nil {
		before(e)
	}
	t0 := time.Now()
	e.publish("mde.offboard.request.contoso.bulk", map[string]any{"requestId": id, "machineId": m.ID, "source": campaign.Source("wave1")}, "contoso:"+id)
	r := c.wait(t, 1, 120*time.Second)["contoso/"+id][0]
	t.Logf("answered after %v: %s %+v", time.Since(t0).Round(100*time.Millisecond), r.Outcome, r.Error)
	var got struct{ ID string }
	_ = json.Unmarshal(r.MachineAction, &got)
	if call && got.ID != actionID && r.Outcome != offboard.OutcomeFailed {
		t.Errorf("action %s, want %s", got.ID, actionID)
	}
	return e, r, actionID
}

// cancelWave1 cancels campaign wave1 of contoso and lets the cancel reach
// the worker.
func cancelWave1(e *env) {
	kv, err := campaign.ControlBucket(e.t.Context(), e.js)
	if err == nil {
		err = campaign.SetMark(e.t.Context(), kv, "contoso", "wave1", campaign.Mark{Cancelled: true, By: "op", At: time.Now()})
	}
	if err != nil {
		e.t.Fatal(err)
	}
	time.Sleep(time.Second)
}

// TestCancelAfterAStoppedReplicasEntryWithoutCall: a replica wrote
// "calling" and stopped before its call went out; the campaign was
// cancelled after. Past the time an action takes to show (shortened to a
// second here), and none found: the request is answered cancelled, no
// call.
func TestCancelAfterAStoppedReplicasEntryWithoutCall(t *testing.T) {
	t.Parallel()
	e, r, _ := callOfAStoppedReplicaWithin(t, "", 0, 0, false, time.Second, cancelWave1)
	if r.Error == nil || r.Error.Code != offboard.CodeCancelled {
		t.Errorf("result %s %+v, want cancelled", r.Outcome, r.Error)
	}
	if n := len(e.sim.Actions(e.tenants["contoso"].tenantID)); n != 0 {
		t.Errorf("%d actions, want none", n)
	}
}

// TestCancelAfterAStoppedReplicasCall: a stopped replica's call created
// the action; the campaign was cancelled after. The action is not in lists
// yet when the request comes back: it is not answered cancelled.
func TestCancelAfterAStoppedReplicasCall(t *testing.T) {
	t.Parallel()
	e, r, _ := callOfAStoppedReplica(t, "", 8*time.Second, -time.Second, true, cancelWave1)
	if n := len(e.sim.Actions(e.tenants["contoso"].tenantID)); n != 1 {
		t.Errorf("%d actions", n)
	}
	if r.Error != nil && r.Error.Code == offboard.CodeCancelled {
		t.Errorf("answered cancelled (%q) while the crashed call's action exists; want created/already_pending", r.Error.Message)
	}
}

// TestGuardAfterAStoppedReplicasCall: a stopped replica's call created
// the action (in lists 10 s later), and the device was tagged after. The
// request is taken again until the action shows, and answered created,
// also when that replica's clock ran 5 minutes behind.
func TestGuardAfterAStoppedReplicasCall(t *testing.T) {
	t.Parallel()
	const guard = "    guards:\n      protect:\n        machineTags: [\"DoNotOffboard\"]\n"
	for name, started := range map[string]time.Duration{"clock right": -time.Second, "clock behind": -5 * time.Minute} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			e, r, _ := callOfAStoppedReplica(t, guard, 10*time.Second, started, true, func(e *env) { protect(e, e.tenants["contoso"].machines[0]) })
			if n := len(e.sim.Actions(e.tenants["contoso"].tenantID)); n != 1 {
				t.Errorf("%d actions, want 1", n)
			}
			if r.Outcome != offboard.OutcomeCreated {
				t.Errorf("result %s %+v, want created with that call's action", r.Outcome, r.Error)
			}
		})
	}
}

// offboardAsTheWorker makes the offboard call the worker would make for a
// request (its comment rendered from d), as a worker that then stopped,
// and returns the action created.
func (e *env) offboardAsTheWorker(a *worker.Tenant, d config.CommentData) mde.Action {
	e.t.Helper()
	comment, err := a.Config.RenderComment(d)
	if err != nil {
		e.t.Fatal(err)
	}
	ans := a.Client.Offboard(e.t.Context(), d.MachineID, comment)
	if ans.Class != mde.Success {
		e.t.Fatalf("offboard: %v", ans.Error())
	}
	action, err := mde.ParseAction(ans.Body)
	if err != nil {
		e.t.Fatal(err)
	}
	return action
}
