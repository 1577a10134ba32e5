package app

import (
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/contoso-secops/mde-offboard/internal/queue"
	"github.com/contoso-secops/mde-offboard/offboard"
)

// TestRemovedStaleConsumerHandsItsTenantToUnrouted: the consumers of a
// tenant no longer configured hold its requests until an operator removes
// them; from then on its new requests are answered unknown_tenant (not
// let go to a consumer that is gone, unanswered) and leave the stream.
func TestRemovedStaleConsumerHandsItsTenantToUnrouted(t *testing.T) {
	t.Parallel()
	e := setup(t, envConfig{tenants: []string{"contoso"}, machines: 1})
	for _, p := range []offboard.Priority{offboard.Normal, offboard.Bulk} {
		if _, err := e.js.CreateOrUpdateConsumer(t.Context(), offboard.StreamRequests, jetstream.ConsumerConfig{
			Durable: queue.ConsumerName("oldco", p), FilterSubject: e.opts.Queue.Subjects.Request("oldco", p),
			Metadata:      map[string]string{queue.MetaTenant: "oldco", queue.MetaPriority: string(p)},
			DeliverPolicy: jetstream.DeliverAllPolicy, AckPolicy: jetstream.AckExplicitPolicy, MaxDeliver: -1,
		}); err != nil {
			t.Fatal(err)
		}
	}
	e.stop()
	e.start() // oldco's consumers are stale now
	for _, p := range []offboard.Priority{offboard.Normal, offboard.Bulk} {
		if err := e.js.DeleteConsumer(t.Context(), offboard.StreamRequests, queue.ConsumerName("oldco", p)); err != nil {
			t.Fatal(err)
		}
	}
	time.Sleep(time.Second) // the worker's stale loops see them gone (Poll 200 ms)
	c := e.collect("mde.offboard.result.>")
	e.publish("mde.offboard.request.oldco", map[string]any{"requestId": "o-1", "machineId": newID()}, "oldco:o-1")
	got := c.wait(t, 1, 10*time.Second)
	if rs := got["oldco/o-1"]; len(rs) != 1 || rs[0].Error == nil || rs[0].Error.Code != offboard.CodeUnknownTenant {
		t.Errorf("oldco's request after its consumers were removed: %+v, want one unknown_tenant", rs)
	}
	eventually(t, 10*time.Second, "request stream empty", func() bool { return e.streamMsgs(offboard.StreamRequests) == 0 })
}
