package worker

import (
	"context"
	"testing"
	"time"

	"github.com/jonboulle/clockwork"

	"github.com/contoso-secops/mde-offboard/offboard"
)

// TestPlanCutoffByTheAPIsClock: a plan's cutoff ("not seen for N") is
// measured as the guards' requireInactiveFor is: from the earlier of the
// host's clock and the API's (the Date of its inventory pages). A host
// whose clock ran days ahead (its time synchronisation failed, and an
// embedded NATS server as far ahead) listed a device Defender saw an
// hour ago as unseen for days, and a campaign of the plan would have
// offboarded it wherever requireInactiveFor is not set.
func TestPlanCutoffByTheAPIsClock(t *testing.T) {
	t.Parallel()
	ahead := clockwork.NewFakeClockAt(time.Now().Add(5 * 24 * time.Hour))
	e := setupLoopOpts(t, `["100/1m"]`, "", RetryPolicy{}, func(o *Options) { o.Clock = ahead })
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	reply, csv, err := offboard.RequestPlan(ctx, e.js, offboard.Subjects{}, "contoso", offboard.PlanRequest{InactiveFor: 72 * time.Hour}, 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if reply.State != offboard.PlanDone {
		t.Fatalf("plan %s %+v, want done", reply.State, reply.Error)
	}
	if reply.Count != 0 {
		t.Errorf("%d devices in a 72h plan, want none: the one device was seen an hour ago by the API's clock\n%s", reply.Count, csv)
	}
	if want := time.Now().Add(-72 * time.Hour); reply.Cutoff.After(want.Add(time.Minute)) {
		t.Errorf("cutoff %v, want about %v: now by the API's clock less 72h", reply.Cutoff, want)
	}
}
