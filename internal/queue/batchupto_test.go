package queue

import (
	"fmt"
	"testing"

	"github.com/contoso-secops/mde-offboard/offboard"
)

// TestNextBatchUpToCapsBulkAlone: of a batch of 4 with room for 1 bulk
// request, normal requests fill the batch and bulk ones take no more than
// their room; a caller whose bulk requests may hold only some of its
// places takes its normal ones in one pull, not one pull per bulk place.
func TestNextBatchUpToCapsBulkAlone(t *testing.T) {
	t.Parallel()
	_, js, r, subj := routed(t, "capped")
	publish := func(p offboard.Priority, n int) {
		t.Helper()
		for i := range n {
			if _, err := js.Publish(t.Context(), subj.Request("capped", p), fmt.Appendf(nil, "%s%d", p, i)); err != nil {
				t.Fatal(err)
			}
		}
	}
	src, err := r.Source(t.Context(), js, "capped", 0)
	if err != nil {
		t.Fatal(err)
	}
	count := func(limit, bulkLimit int) map[offboard.Priority]int {
		t.Helper()
		ds, err := src.NextBatchUpTo(t.Context(), limit, bulkLimit, nil, offboard.Normal, offboard.Bulk)
		if err != nil {
			t.Fatal(err)
		}
		got := map[offboard.Priority]int{}
		for _, d := range ds {
			got[d.Prio]++
			_ = d.Msg.Ack()
		}
		return got
	}
	publish(offboard.Normal, 3)
	publish(offboard.Bulk, 5)
	if got := count(4, 1); got[offboard.Normal] != 3 || got[offboard.Bulk] != 1 {
		t.Errorf("3 normal and 5 bulk waiting, a batch of 4 with room for 1 bulk: %v, want 3 normal and 1 bulk", got)
	}
	if got := count(4, 2); got[offboard.Normal] != 0 || got[offboard.Bulk] != 2 {
		t.Errorf("4 bulk waiting, a batch of 4 with room for 2 bulk: %v, want 2 bulk", got)
	}
	publish(offboard.Normal, 4)
	if got := count(4, 1); got[offboard.Normal] != 4 || got[offboard.Bulk] != 0 {
		t.Errorf("4 normal and 2 bulk waiting, a batch of 4 with room for 1 bulk: %v, want 4 normal", got)
	}
}
