package worker

import (
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/contoso-secops/mde-offboard/internal/campaign"
	"github.com/contoso-secops/mde-offboard/offboard"
)

// TestCancelFarBehindCountsTheRowsItAnswers: a cancelled campaign's rows
// read from the stream past the requests a cancel's pass sets aside
// (withdrawBehind), not delivered, are counted in
// mde_offboard_requests_received_total as the requests they are answered
// like: under their tenant and priority, once each. Before, their
// results (failed, cancelled) were counted and they were not: after a
// cancel far behind, the tenant had more results than requests received.
func TestCancelFarBehindCountsTheRowsItAnswers(t *testing.T) {
	t.Parallel()
	e := setupLoopOpts(t, `["1/1h"]`, "", RetryPolicy{}, nil)
	e.publish(t, "r-1")
	e.wantCreated(t, "r-1") // the hour's only call is spent
	const others, far = withdrawScan + 50, 3
	ids := make([]string, 0, others+far)
	want := map[string]bool{}
	for i := range others {
		ids = append(ids, campaign.RequestID("wave1", i+1))
	}
	for i := range far {
		id := campaign.RequestID("wave2", i+1)
		ids = append(ids, id)
		want[id] = true
	}
	e.publishMany(t, ids, offboard.Bulk)
	received := e.w.m.RequestsReceived.WithLabelValues("contoso", string(offboard.Bulk))
	before := testutil.ToFloat64(received)
	cancelled := testutil.ToFloat64(e.w.m.Results.WithLabelValues("contoso", offboard.OutcomeFailed, offboard.CodeCancelled))
	time.Sleep(300 * time.Millisecond)
	e.cancelCampaign(t, "wave2")
	e.wantCancelledWithin(t, want, 15*time.Second, "within 15 s of the cancel")
	// A result is counted once published: wait for the last count.
	results := e.w.m.Results.WithLabelValues("contoso", offboard.OutcomeFailed, offboard.CodeCancelled)
	for deadline := time.Now().Add(5 * time.Second); testutil.ToFloat64(results)-cancelled < far && time.Now().Before(deadline); {
		time.Sleep(10 * time.Millisecond)
	}
	if n := testutil.ToFloat64(results) - cancelled; n != far {
		t.Errorf("%v cancelled results counted, want %d", n, far)
	}
	if n := testutil.ToFloat64(received) - before; n != far {
		t.Errorf("%v bulk requests counted received during the cancel, want the %d rows answered cancelled", n, far)
	}
}
