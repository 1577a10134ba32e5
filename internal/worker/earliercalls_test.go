package worker

import (
	"testing"
	"time"

	"github.com/contoso-secops/mde-offboard/internal/mde"
	"github.com/contoso-secops/mde-offboard/internal/queue"
	"github.com/contoso-secops/mde-offboard/offboard"
)

// TestActionOfAnEarlierCallCountsItsCall: a replica stopped after its
// offboard call for r-1 went out and made an action; the redelivery
// finds that action and answers created. Its attempts ("offboard calls
// made for this request") count that call: before, they counted only the
// redelivery's own, and read 0 for a request whose call made its action.
func TestActionOfAnEarlierCallCountsItsCall(t *testing.T) {
	t.Parallel()
	e := setupLoopOpts(t, `["100/1m"]`, "", RetryPolicy{NotFoundCheck: 1}, func(o *Options) {
		o.Presence = marked{instance: "w-1"}
	})
	const comment = "offboard r-1"
	if v := e.w.tenants["contoso"].Client.Offboard(t.Context(), loopMachine, comment); v.Class != mde.Success {
		t.Fatal(v.Error())
	}
	earlier := &queue.Entry{State: queue.StateCalling, Seq: 99, MachineID: loopMachine, Started: e.clock.Now().Add(-3 * time.Hour).UTC(), Writer: "w-0"}
	if err := e.w.opts.Ledger.Put(t.Context(), "contoso", "r-1", nil, earlier); err != nil {
		t.Fatal(err)
	}
	e.publishR1(t, comment)
	r := e.resultDriven(t)
	e.oneActionCreated(t, r, "the earlier call's")
	if r.Attempts != 1 {
		t.Errorf("attempts %d, want 1: the earlier call that made the action", r.Attempts)
	}
	if r.Outcome != offboard.OutcomeCreated {
		t.Errorf("outcome %s, want created", r.Outcome)
	}
}
