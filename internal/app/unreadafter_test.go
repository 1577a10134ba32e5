package app

import (
	"encoding/json"
	"net/http"
	"testing"
	"time"

	"github.com/contoso-secops/mde-offboard/internal/campaign"
	"github.com/contoso-secops/mde-offboard/internal/config"
	"github.com/contoso-secops/mde-offboard/internal/mde"
	"github.com/contoso-secops/mde-offboard/internal/mde/mdesim"
	"github.com/contoso-secops/mde-offboard/internal/queue"
	"github.com/contoso-secops/mde-offboard/offboard"
)

// TestUnreadDeviceAfterAStoppedReplicasCall: a stopped replica's call
// created the action (in lists 10 s later), and the read of the device
// answered 404 until then, as the API does now and then for devices that
// exist: the read for the guards, or a dry run's read of a tenant without
// guards. The request is taken again until the action shows, and
// answered created with that call's action, as after a guard's refusal
// (TestGuardAfterAStoppedReplicasCall). It was answered
// machine_not_found: a device offboarded, the result saying it does not
// exist.
func TestUnreadDeviceAfterAStoppedReplicasCall(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name, extra string
		dryRun      bool
	}{
		{"guards", "    guards:\n      protect:\n        machineTags: [\"DoNotOffboard\"]\n", false},
		{"dry run", "", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			e := setup(t, envConfig{machines: 1, tenants: []string{"contoso"}, ackWait: 2 * time.Second, extra: tc.extra, noStart: true,
				sim: mdesim.Options{ActionVisibleAfter: 10 * time.Second}})
			e.start()
			c := e.collect("mde.offboard.result.>")
			tt := e.tenants["contoso"]
			m := tt.machines[0]
			id := campaign.RequestID("wave1", 1)
			action := e.offboardAsTheWorker(e.app.tenants[0], config.CommentData{RequestID: id, Source: campaign.Source("wave1"), Tenant: "contoso", MachineID: m.ID})
			e.putForNextRequest(t, id, &queue.Entry{State: queue.StateCalling, MachineID: m.ID, Started: time.Now().Add(-time.Second), Writer: "dead-replica"})
			e.sim.InjectStatus(tt.tenantID, mde.APIMachines, http.StatusNotFound, "ResourceNotFound", "Machine was not found", 20, 0)
			body := map[string]any{"requestId": id, "machineId": m.ID, "source": campaign.Source("wave1")}
			if tc.dryRun {
				body["dryRun"] = true
			}
			e.publish("mde.offboard.request.contoso.bulk", body, "contoso:"+id)
			r := c.wait(t, 1, 120*time.Second)["contoso/"+id][0]
			var got struct{ ID string }
			_ = json.Unmarshal(r.MachineAction, &got)
			if r.Outcome != offboard.OutcomeCreated || got.ID != action.ID {
				t.Errorf("result %s %+v with action %q, want created with the stopped replica's action %s", r.Outcome, r.Error, got.ID, action.ID)
			}
			if n := len(e.sim.Actions(tt.tenantID)); n != 1 {
				t.Errorf("%d actions, want 1", n)
			}
		})
	}
}

// TestRefusedRepeatAfterAStoppedReplicasCall: a stopped replica's call
// created the action, which lists show 8 s later; taken again before,
// the request looks for it, finds none, and calls: the API refuses the
// repeat as an offboard already pending. The request looks for that
// action until it shows (an action may take ActionShowsWithin to), and
// is answered with it, as the contract has a request that meets the
// action it created itself. It was answered api_error ("lists no
// unfinished Offboard action") after four looks within a second.
func TestRefusedRepeatAfterAStoppedReplicasCall(t *testing.T) {
	t.Parallel()
	e, r, actionID := callOfAStoppedReplica(t, "", 8*time.Second, -time.Second, true, nil)
	var got struct{ ID string }
	_ = json.Unmarshal(r.MachineAction, &got)
	if (r.Outcome != offboard.OutcomeCreated && r.Outcome != offboard.OutcomeAlreadyPending) || got.ID != actionID {
		t.Errorf("result %s %+v with action %q, want created or already_pending with the stopped replica's action %s", r.Outcome, r.Error, got.ID, actionID)
	}
	if n := len(e.sim.Actions(e.tenants["contoso"].tenantID)); n != 1 {
		t.Errorf("%d actions, want 1", n)
	}
}
