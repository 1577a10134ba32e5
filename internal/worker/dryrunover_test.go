package worker

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/contoso-secops/mde-offboard/internal/mde"
	"github.com/contoso-secops/mde-offboard/internal/queue"
	"github.com/contoso-secops/mde-offboard/offboard"
)

// TestDryRunOfAnIdWhoseCallWentOut: a replica stopped after its call for
// request r-1 went out (the call made an action; the "calling" entry is
// older than its lease), and a dry run of r-1 comes before the request's
// redelivery. The dry run is answered with the call's action, created,
// and so is the request: one action, reported. Before, the dry run was
// answered dry_run and stored that over the call's entry; the request was
// then answered dry_run from the ledger, with the device offboarded and
// its action never reported. Without an action of the earlier call, the
// dry run is answered dry_run, and calls nothing.
func TestDryRunOfAnIdWhoseCallWentOut(t *testing.T) {
	for _, acted := range []bool{true, false} {
		name := "no action"
		if acted {
			name = "an action"
		}
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			e := setupLoopOpts(t, `["100/1m"]`, "", RetryPolicy{NotFoundCheck: 1}, func(o *Options) {
				o.Presence = marked{instance: "w-1"}
			})
			const comment = "offboard r-1"
			if acted {
				if v := e.w.tenants["contoso"].Client.Offboard(t.Context(), loopMachine, comment); v.Class != mde.Success {
					t.Fatal(v.Error())
				}
			}
			earlier := &queue.Entry{State: queue.StateCalling, Seq: 99, MachineID: loopMachine, Started: e.clock.Now().Add(-3 * time.Hour).UTC(), Writer: "w-0"}
			if err := e.w.opts.Ledger.Put(t.Context(), "contoso", "r-1", nil, earlier); err != nil {
				t.Fatal(err)
			}
			data, _ := json.Marshal(map[string]any{"requestId": "r-1", "machineId": loopMachine, "comment": comment, "dryRun": true})
			m := nats.NewMsg(offboard.Subjects{}.Request("contoso", offboard.Normal))
			m.Data = data
			m.Header.Set(jetstream.MsgIDHeader, "contoso:r-1:dry")
			if _, err := e.js.PublishMsg(t.Context(), m); err != nil {
				t.Fatal(err)
			}
			dry := e.resultDriven(t)
			if !acted {
				if dry.Outcome != offboard.OutcomeDryRun || len(e.sim.Actions(loopTenantID)) != 0 {
					t.Errorf("dry run with no earlier action: %s %+v, %d actions; want dry_run and none", dry.Outcome, dry.Error, len(e.sim.Actions(loopTenantID)))
				}
				return
			}
			e.oneActionCreated(t, dry, "the earlier call's")
			e.publishR1(t, comment)
			e.oneActionCreated(t, e.resultDriven(t), "the earlier call's")
		})
	}
}
