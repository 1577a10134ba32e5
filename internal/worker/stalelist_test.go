package worker

import (
	"testing"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/contoso-secops/mde-offboard/internal/queue"
	"github.com/contoso-secops/mde-offboard/internal/queue/natstest"
	"github.com/contoso-secops/mde-offboard/offboard"
)

// TestStaleConsumersTakenStayWhole: the stats loop sweeps the stale
// consumers it took from the worker while a consumer found removed is
// forgotten. Forgetting one must not change the list taken: it emptied
// a place of it in passing, and the sweep then read a consumer that was
// nil, and the worker crashed.
func TestStaleConsumersTakenStayWhole(t *testing.T) {
	t.Parallel()
	_, js := natstest.Connect(t)
	ctx := t.Context()
	s := queue.Settings{Tenants: []string{"oldco"}}
	if _, err := queue.Ensure(ctx, js, s); err != nil {
		t.Fatal(err)
	}
	var conss []jetstream.Consumer
	for _, p := range []offboard.Priority{offboard.Normal, offboard.Bulk} {
		cons, err := js.Consumer(ctx, offboard.StreamRequests, queue.ConsumerName("oldco", p))
		if err != nil {
			t.Fatal(err)
		}
		conss = append(conss, cons)
	}
	w := &Worker{stale: map[string][]jetstream.Consumer{}}
	for _, cons := range conss {
		if !w.addStale(cons) {
			t.Fatalf("%s known already", cons.CachedInfo().Name)
		}
	}
	taken := w.staleConsumers()
	w.forgetStale(conss[0])
	if got := taken["oldco"]; len(got) != 2 || got[0] == nil || got[1] == nil {
		t.Fatalf("the list taken before a consumer was forgotten became %v, want both consumers", got)
	}
	if got := w.staleConsumers()["oldco"]; len(got) != 1 || got[0].CachedInfo().Name != conss[1].CachedInfo().Name {
		t.Errorf("stale consumers after one was forgotten: %v, want the other alone", got)
	}
}
