package worker

import (
	"fmt"
	"testing"
	"time"

	"github.com/contoso-secops/mde-offboard/offboard"
)

// TestCancelReachesBulkRowsBehindManyNormalRequests: a cancelled bulk
// campaign's rows wait in their own lane, behind nothing there, while
// more normal requests than a pass sets aside (withdrawScan) wait in the
// normal lane, held by a spent quota or a pause of both priorities. The
// pass reaches the bulk rows all the same: answered cancelled within
// seconds, no call; the normal requests keep their order, the first one
// published called first once the quota frees (or the pause lifts).
func TestCancelReachesBulkRowsBehindManyNormalRequests(t *testing.T) {
	t.Parallel()
	for _, held := range []string{"quota", "pause"} {
		t.Run(held, func(t *testing.T) {
			t.Parallel()
			board := newSwitchboard()
			e := setupLoopOpts(t, `["1/1h"]`, "", RetryPolicy{}, func(o *Options) { o.Control = board })
			if held == "quota" {
				e.publish(t, "r-1")
				e.wantCreated(t, "r-1") // the hour's only call is spent
			} else {
				board.pause("contoso", offboard.Normal)
				board.pause("contoso", offboard.Bulk)
			}
			ahead := withdrawScan + 1
			for i := range ahead {
				e.publishPrio(t, fmt.Sprintf("n-%03d", i+1), offboard.Normal)
			}
			want := e.publishRows(t, "wave1", 3, offboard.Bulk)
			time.Sleep(300 * time.Millisecond)
			e.cancelCampaign(t, "wave1")
			cancelled := time.Now()
			e.wantCancelledWithin(t, want, 10*time.Second, fmt.Sprintf("within 10 s of the cancel, %d normal requests ahead in their own lane", ahead))
			if d := time.Since(cancelled); d > 5*time.Second {
				t.Errorf("answered cancelled %v after the cancel, want within seconds", d.Round(100*time.Millisecond))
			}
			calls := 0
			if held == "quota" {
				calls = 1
			}
			if n := e.offboardCalls(); n != calls {
				t.Errorf("%d offboard calls, want %d", n, calls)
			}
			if held == "pause" {
				board.resume("contoso", offboard.Normal)
				board.resume("contoso", offboard.Bulk)
			}
			if r := e.resultOnceTheQuotaFrees(t, "n-001"); r.RequestID != "n-001" || r.Outcome != offboard.OutcomeCreated {
				t.Errorf("result %s %s %+v first, want n-001 created: the requests given back keep their order", r.RequestID, r.Outcome, r.Error)
			}
		})
	}
}
