package worker

import (
	"encoding/json"
	"testing"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	dto "github.com/prometheus/client_model/go"

	"github.com/contoso-secops/mde-offboard/offboard"
)

// TestReplayedResultCountsOnce: a request id sent again under a new
// message id is answered from the ledger, and the results stream drops
// that answer as a repeat: mde_offboard_results_total and the request to
// result histogram count the one result stored, not two (they said two
// devices offboarded for one action).
func TestReplayedResultCountsOnce(t *testing.T) {
	t.Parallel()
	e := setupLoop(t, `["100/1m"]`, RetryPolicy{})
	e.publish(t, "r-1")
	e.wantCreated(t, "r-1")

	data, _ := json.Marshal(map[string]any{"requestId": "r-1", "machineId": loopMachine})
	m := nats.NewMsg(offboard.Subjects{}.Request("contoso", offboard.Normal))
	m.Data = data
	m.Header.Set(jetstream.MsgIDHeader, "contoso:r-1:sent-again")
	if _, err := e.js.PublishMsg(t.Context(), m); err != nil {
		t.Fatal(err)
	}
	e.wantCreated(t, "r-1") // from the ledger; the stream keeps the first

	// The answer is counted (or not) before the request is acked and
	// deleted: once the stream is empty, the count is final.
	waitRequestsGone(t, e.js)
	if v := testutil.ToFloat64(e.w.m.Results.WithLabelValues("contoso", offboard.OutcomeCreated, "")); v != 1 {
		t.Errorf("mde_offboard_results_total{contoso,created} = %v, want 1: one result stored, one action", v)
	}
	var h dto.Metric
	if err := e.w.m.RequestToResult.WithLabelValues(string(offboard.Normal), offboard.OutcomeCreated).(prometheus.Metric).Write(&h); err != nil {
		t.Fatal(err)
	}
	if n := h.GetHistogram().GetSampleCount(); n != 1 {
		t.Errorf("mde_offboard_request_to_result_seconds{normal,created} counted %d results, want 1", n)
	}
}
