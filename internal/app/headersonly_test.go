package app

import (
	"testing"
	"time"

	"github.com/contoso-secops/mde-offboard/internal/queue"
	"github.com/contoso-secops/mde-offboard/offboard"
)

// TestRequestsOfAHeadersOnlyConsumerAreReadWhole: a tenant's consumer,
// and the unrouted one, set by hand to deliver headers only while the
// worker runs (nats consumer edit; setup sets them back at the next
// start) hand out requests without their bodies. The worker reads each
// whole from the stream: a valid request is worked on and answered once,
// a request of a tenant nobody serves is answered unknown_tenant with its
// request id. Before, each was answered invalid_request ("it is empty"),
// its dead letter empty, and deleted: its content was lost.
func TestRequestsOfAHeadersOnlyConsumerAreReadWhole(t *testing.T) {
	t.Parallel()
	e := setup(t, envConfig{machines: 2, tenants: []string{"contoso"}})
	for _, name := range []string{queue.ConsumerName("contoso", offboard.Normal), queue.ConsumerUnrouted} {
		c, err := e.js.Consumer(t.Context(), offboard.StreamRequests, name)
		if err != nil {
			t.Fatal(err)
		}
		cfg := c.CachedInfo().Config
		cfg.HeadersOnly = true
		if _, err := e.js.UpdateConsumer(t.Context(), offboard.StreamRequests, cfg); err != nil {
			t.Fatal(err)
		}
	}
	res := e.collect("mde.offboard.result.>")
	e.publish("mde.offboard.request.contoso", map[string]any{"requestId": "r-1", "machineId": e.tenants["contoso"].machines[0].ID}, "contoso:r-1")
	e.publish("mde.offboard.request.nobody", map[string]any{"requestId": "r-2", "machineId": e.tenants["contoso"].machines[1].ID}, "nobody:r-2")
	res.wait(t, 2, 20*time.Second)
	time.Sleep(500 * time.Millisecond) // strays
	got := res.snapshot()
	lost := 0
	for key, rs := range got {
		if key != "contoso/r-1" && key != "nobody/r-2" {
			lost++
			t.Errorf("%s: %d results, first %s %+v", key, len(rs), rs[0].Outcome, rs[0].Error)
		}
	}
	if rs := got["contoso/r-1"]; len(rs) != 1 || rs[0].Outcome != offboard.OutcomeCreated {
		t.Errorf("contoso/r-1: results %+v, want one created", rs)
	}
	if rs := got["nobody/r-2"]; len(rs) != 1 || rs[0].Error == nil || rs[0].Error.Code != offboard.CodeUnknownTenant {
		t.Errorf("nobody/r-2: results %+v, want one unknown_tenant", rs)
	}
	if n := e.apiCalls("offboard"); n != 1 {
		t.Errorf("%d offboard calls, want 1", n)
	}
	for _, d := range e.deadLetters() {
		if len(d.Data()) == 0 {
			t.Errorf("an empty dead letter: %v", d.Headers())
		}
	}
	t.Logf("%d of 2 requests answered without their content", lost)
}
