package app

import (
	"testing"
	"time"

	"github.com/contoso-secops/mde-offboard/internal/campaign"
	"github.com/contoso-secops/mde-offboard/offboard"
)

// TestCancelWrittenWhileAReplicaWasCutOff: a campaign cancelled while a
// replica is cut off from NATS is cancelled there as soon as it is back:
// the campaign's request that waited out a 429 there, and whose retry
// fell due during the cut, is answered cancelled, not sent before the
// replica has read the campaign marks anew. Before, the retry went out
// the moment the connection came back, with the marks read before the
// cut.
func TestCancelWrittenWhileAReplicaWasCutOff(t *testing.T) {
	t.Parallel()
	id := campaign.RequestID("wave1", 1)
	e, _, res, cancelled := cutOffAfterA429(t,
		func(e *env) {
			e.publish("mde.offboard.request.contoso.bulk", map[string]any{"requestId": id, "machineId": e.tenants["contoso"].machines[0].ID,
				"source": campaign.Source("wave1")}, "contoso:"+id)
		},
		func(e *env) time.Time {
			kv, err := campaign.ControlBucket(t.Context(), e.js)
			if err != nil {
				t.Fatal(err)
			}
			at := time.Now()
			if err := campaign.SetMark(t.Context(), kv, "contoso", "wave1", campaign.Mark{Cancelled: true, By: "op", At: at}); err != nil {
				t.Fatal(err)
			}
			return at
		})
	got := res.wait(t, 1, 20*time.Second)
	if calls := e.offboardCallsSince("contoso", cancelled); len(calls) > 0 {
		t.Errorf("%d contoso calls after the cancel, the first %v after it was written", len(calls), calls[0].Sub(cancelled))
	}
	for _, rs := range got {
		if r := rs[len(rs)-1]; r.Outcome != offboard.OutcomeFailed || r.Error == nil || r.Error.Code != offboard.CodeCancelled {
			t.Errorf("%s: %s %+v, want failed, cancelled", r.RequestID, r.Outcome, r.Error)
		}
	}
}
