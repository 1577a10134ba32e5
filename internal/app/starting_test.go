package app

import (
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/contoso-secops/mde-offboard/internal/queue"
	"github.com/contoso-secops/mde-offboard/offboard"
)

// TestUnroutedLeavesARequestItsTenantsConsumerHolds: replica B serves
// contoso only. Replica A, starting with fabrikam, has made fabrikam's
// consumers (its setup comes before its announcement, and B reads the
// announcement a moment after it is written) and its fabrikam consumer
// has handed it a request. B's unrouted consumer, which sees every
// request, must let that request go rather than answer it unknown_tenant
// and delete it: A goes on to offboard the device, and the request would
// get two results, one of them for a call that was made.
func TestUnroutedLeavesARequestItsTenantsConsumerHolds(t *testing.T) {
	t.Parallel()
	e := setup(t, envConfig{machines: 1, noStart: true})
	full := e.opts.Tenants
	e.opts.Tenants = tenantsOnly(full, "contoso")
	e.start() // B
	ctx := t.Context()
	// A's setup: fabrikam's consumers, before any announcement of A's.
	if _, err := queue.Ensure(ctx, e.js, queue.Settings{Tenants: []string{"fabrikam"}, AckWait: time.Minute}); err != nil {
		t.Fatal(err)
	}
	cons, err := e.js.Consumer(ctx, offboard.StreamRequests, queue.ConsumerName("fabrikam", offboard.Normal))
	if err != nil {
		t.Fatal(err)
	}
	// A's pull waits before the request comes, so that it gets it: B,
	// which finds fabrikam's consumer through its unrouted one, would
	// otherwise drain that consumer as a stale one, and a slow fetch of
	// A's came second.
	fetched := make(chan int, 1)
	go func() {
		n := 0
		if batch, err := cons.Fetch(1, jetstream.FetchMaxWait(10*time.Second)); err == nil {
			for range batch.Messages() { // A has it, and works on it
				n++
			}
		}
		fetched <- n
	}()
	eventually(t, 5*time.Second, "A's pull waiting", func() bool {
		info, err := cons.Info(ctx)
		return err == nil && info.NumWaiting > 0
	})
	ack := e.publish("mde.offboard.request.fabrikam", map[string]any{"requestId": "f-0", "machineId": e.tenants["fabrikam"].machines[0].ID}, "fabrikam:f-0")
	if held := <-fetched; held != 1 {
		t.Fatalf("fabrikam's consumer handed over %d requests, want 1", held)
	}
	unrouted, err := e.js.Consumer(ctx, offboard.StreamRequests, queue.ConsumerUnrouted)
	if err != nil {
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, "B's unrouted consumer done with the request", func() bool {
		info, err := unrouted.Info(ctx)
		return err == nil && info.AckFloor.Stream >= ack.Sequence
	})
	results, err := e.js.Stream(ctx, offboard.StreamResults)
	if err != nil {
		t.Fatal(err)
	}
	info, err := results.Info(ctx, jetstream.WithSubjectFilter("mde.offboard.result.>"))
	if err != nil {
		t.Fatal(err)
	}
	if n := info.State.Msgs; n != 0 {
		t.Errorf("B answered %d results for a request fabrikam's consumer handed to A; want none", n)
	}
	requests, err := e.js.Stream(ctx, offboard.StreamRequests)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := requests.GetMsg(ctx, ack.Sequence); err != nil {
		t.Errorf("the request A works on: %v; want it still in the stream", err)
	}
}
