package app

import (
	"net/http"
	"testing"
	"time"

	"github.com/contoso-secops/mde-offboard/offboard"
)

// TestLedgerPurgedDuringACall: the ledger bucket purged (by an operator,
// or its entry gone) while a request's offboard call is out. The call's
// created result still gets its ledger entry, the request is acked, and
// no second call goes to the device. Before, the entry's compare-and-swap
// failed over the purged "calling" entry, the request came back with no
// entry at all, and was called again as new.
func TestLedgerPurgedDuringACall(t *testing.T) {
	e := setup(t, envConfig{tenants: []string{"contoso"}, machines: 1, noStart: true})
	inCall := make(chan struct{}, 4)
	release := make(chan struct{})
	withRewrite(e, func(req *http.Request, status int, body []byte) []byte {
		if isOffboard(req) {
			inCall <- struct{}{}
			<-release
		}
		return body
	})
	e.start()
	results := e.collect("mde.offboard.result.>")
	m := e.tenants["contoso"].machines[0]
	e.publish("mde.offboard.request.contoso", map[string]any{"requestId": "purged-1", "machineId": m.ID}, "contoso:purged-1")
	select {
	case <-inCall:
	case <-time.After(20 * time.Second):
		t.Fatal("no offboard call")
	}
	ledger, err := e.js.Stream(t.Context(), "KV_"+offboard.BucketLedger)
	if err != nil {
		t.Fatal(err)
	}
	if err := ledger.Purge(t.Context()); err != nil {
		t.Fatal(err)
	}
	close(release)
	results.wait(t, 1, 20*time.Second)
	eventually(t, 30*time.Second, "request removed from the stream", func() bool {
		return e.streamMsgs(offboard.StreamRequests) == 0
	})
	if n := e.offboardCalls(e.tenants["contoso"].tenantID, m.ID); n != 1 {
		t.Errorf("%d offboard calls for the device, want 1", n)
	}
	rs := results.snapshot()["contoso/purged-1"]
	if len(rs) != 1 || rs[0].Outcome != offboard.OutcomeCreated {
		t.Errorf("results %v, want one created", rs)
	}
	kv, err := e.js.KeyValue(t.Context(), offboard.BucketLedger)
	if err != nil {
		t.Fatal(err)
	}
	keys, err := kv.ListKeys(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for range keys.Keys() {
		n++
	}
	if n != 1 {
		t.Errorf("%d ledger entries, want the request's", n)
	}
}
