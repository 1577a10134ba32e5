package worker

import (
	"encoding/json"
	"testing"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/contoso-secops/mde-offboard/offboard"
)

// TestBlockedCountsOnceForARequestIDSentAgain: a request id sent again
// under a new message id, its device refused by a guard that needs no
// read (machineIds), is refused again before its ledger entry is met; the
// second message is then answered from the ledger. One device was refused
// once, one result stored: mde_offboard_blocked_total says 1, as
// results_total{code="blocked_by_policy"} does (it said 2).
func TestBlockedCountsOnceForARequestIDSentAgain(t *testing.T) {
	t.Parallel()
	e := setupLoopWith(t, `["100/1m"]`, "    guards:\n      protect:\n        machineIds: [\""+loopMachine+"\"]\n", RetryPolicy{})
	for _, msgID := range []string{"contoso:r-1", "contoso:r-1:sent-again"} {
		data, _ := json.Marshal(map[string]any{"requestId": "r-1", "machineId": loopMachine})
		m := nats.NewMsg(offboard.Subjects{}.Request("contoso", offboard.Normal))
		m.Data = data
		m.Header.Set(jetstream.MsgIDHeader, msgID)
		if _, err := e.js.PublishMsg(t.Context(), m); err != nil {
			t.Fatal(err)
		}
	}
	if r := e.nextResult(t, "r-1"); r.Error == nil || r.Error.Code != offboard.CodeBlockedByPolicy {
		t.Fatalf("result %+v, want blocked_by_policy", r)
	}
	// Counted (or not) before each message is acked and deleted: once
	// the stream is empty, the counts are final.
	waitRequestsGone(t, e.js)
	results := testutil.ToFloat64(e.w.m.Results.WithLabelValues("contoso", offboard.OutcomeFailed, offboard.CodeBlockedByPolicy))
	blocked := testutil.ToFloat64(e.w.m.Blocked.WithLabelValues("contoso", offboard.RuleMachineIDs))
	if results != 1 || blocked != 1 {
		t.Errorf("results_total{blocked_by_policy} = %v, blocked_total{machineIds} = %v; want 1 and 1: one device refused, one result stored", results, blocked)
	}
}
