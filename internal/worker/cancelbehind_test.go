package worker

import (
	"testing"
	"time"

	"github.com/contoso-secops/mde-offboard/internal/campaign"
	"github.com/contoso-secops/mde-offboard/offboard"
)

// TestCancelReachesRequestsBehindOthers: with the quota spent, a
// cancelled campaign's requests wait in the stream behind more requests
// than the tenant has in-flight slots (4): single requests at normal
// priority, which bulk never passes, or another campaign's rows sent
// before. They are answered cancelled within seconds all the same, with
// no call; the others keep waiting, and are called once the quota frees.
func TestCancelReachesRequestsBehindOthers(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name  string
		ahead offboard.Priority // the others'
	}{
		{"bulk behind normal", offboard.Normal},
		{"behind another campaign", offboard.Bulk},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			e := setupLoop(t, `["1/1h"]`, RetryPolicy{})
			e.publish(t, "r-1")
			e.wantCreated(t, "r-1") // the hour's only call is spent
			for i := range 6 {
				e.publishPrio(t, campaign.RequestID("wave2", i+1), tc.ahead)
			}
			want := e.publishRows(t, "wave1", 3, offboard.Bulk)
			time.Sleep(300 * time.Millisecond)
			e.cancelCampaign(t, "wave1")
			cancelled := time.Now()
			e.wantCancelled(t, want)
			if d := time.Since(cancelled); d > 5*time.Second {
				t.Errorf("answered cancelled %v after the cancel, want within seconds", d.Round(100*time.Millisecond))
			}
			if n := e.offboardCalls(); n != 1 {
				t.Errorf("%d offboard calls, want r-1's alone", n)
			}
			if r := e.resultOnceTheQuotaFrees(t, "a wave2 row"); r.Outcome != offboard.OutcomeCreated && r.Outcome != offboard.OutcomeAlreadyPending {
				t.Errorf("result %s %s %+v once the quota freed, want a wave2 row's call", r.RequestID, r.Outcome, r.Error)
			}
		})
	}
}
