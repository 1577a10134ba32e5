package app

import (
	"testing"
	"time"

	"github.com/contoso-secops/mde-offboard/internal/mde/mdesim"
	"github.com/contoso-secops/mde-offboard/internal/queue"
	"github.com/contoso-secops/mde-offboard/offboard"
)

// TestSlowCallKeepsItsRequest: a call that takes three ack waits keeps its
// request: the worker tells JetStream it is still working on it, so the
// request is not delivered again meanwhile, and it gets one call and one
// result.
func TestSlowCallKeepsItsRequest(t *testing.T) {
	const ackWait = time.Second
	e := setup(t, envConfig{
		sim:      mdesim.Options{Latency: 3 * ackWait},
		tenants:  []string{"contoso"},
		machines: 2,
		ackWait:  ackWait,
	})
	results := e.collect("mde.offboard.result.>")
	// The second request, sent while the first call is under way, makes
	// the worker pull again: a request whose ack wait ran out would come
	// with it.
	ms := e.tenants["contoso"].machines
	e.publish("mde.offboard.request.contoso", map[string]any{"requestId": "slow-1", "machineId": ms[0].ID}, "slow-1")
	time.Sleep(2 * ackWait)
	e.publish("mde.offboard.request.contoso", map[string]any{"requestId": "slow-2", "machineId": ms[1].ID}, "slow-2")
	got := results.wait(t, 2, 20*time.Second)
	for i, id := range []string{"slow-1", "slow-2"} {
		rs := got["contoso/"+id]
		if len(rs) != 1 || rs[0].Outcome != offboard.OutcomeCreated {
			t.Errorf("%s: %d results (%v), want one, created", id, len(rs), rs)
		}
		if n := e.offboardCalls(e.tenants["contoso"].tenantID, ms[i].ID); n != 1 {
			t.Errorf("%s: %d offboard calls, want 1", id, n)
		}
	}
	c, err := e.js.Consumer(t.Context(), "MDE_OFFBOARD_REQUESTS", queue.ConsumerName("contoso", offboard.Normal))
	if err != nil {
		t.Fatal(err)
	}
	info, err := c.Info(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	// Every delivery takes a consumer sequence number: two requests, two
	// deliveries.
	if info.Delivered.Consumer != 2 {
		t.Errorf("%d deliveries of 2 requests: a request was delivered again while its call was under way", info.Delivered.Consumer)
	}
}
