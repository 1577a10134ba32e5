package control

import (
	"encoding/json"
	"slices"
	"testing"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/contoso-secops/mde-offboard/internal/queue"
	"github.com/contoso-secops/mde-offboard/internal/queue/natstest"
	"github.com/contoso-secops/mde-offboard/offboard"
)

// TestChangeOfBothWrittenAgainAfterAChangeInBetween: a pause of both
// priorities whose bulk key another operator's resume of bulk wrote
// between its two writes is written again whole. Before, it returned
// with normal paused and bulk resumed, and its event, of the higher
// revision, had the audit trail say both paused: read in revision order,
// the events gave a state that was not the one in force.
func TestChangeOfBothWrittenAgainAfterAChangeInBetween(t *testing.T) {
	t.Parallel()
	c := natstest.Start(t, 1)
	_, js := c.Connect(t)
	if _, err := queue.Ensure(t.Context(), js, queue.Settings{Tenants: []string{"contoso"}}); err != nil {
		t.Fatal(err)
	}
	_, js2 := c.Connect(t)
	alice, err := Open(t.Context(), js, offboard.Subjects{})
	if err != nil {
		t.Fatal(err)
	}
	bob, err := Open(t.Context(), js2, offboard.Subjects{})
	if err != nil {
		t.Fatal(err)
	}
	bulk := PauseKey("contoso", offboard.Bulk)
	alice.wrote = func(key string) {
		if key != bulk {
			return
		}
		alice.wrote = nil // once
		if _, err := bob.Apply(t.Context(), Change{Tenant: "contoso", Action: ActionResume, Priority: string(offboard.Bulk), By: "bob"}); err != nil {
			t.Error(err)
		}
	}
	if _, err := alice.Apply(t.Context(), Change{Tenant: "contoso", Action: ActionPause, Priority: PriorityAll, By: "alice"}); err != nil {
		t.Fatal(err)
	}

	view, err := alice.Load(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	// The audit trail read in revision order.
	events := readEvents(t, js)
	slices.SortFunc(events, func(a, b Event) int { return int(a.Revision) - int(b.Revision) })
	trail := map[offboard.Priority]bool{}
	for _, ev := range events {
		prios, _ := ParsePriority(ev.Priority)
		for _, p := range prios {
			trail[p] = ev.Action == ActionPause
		}
	}
	for _, p := range Priorities {
		if trail[p] != view.Paused("contoso", p) {
			t.Errorf("%s: paused %v in the bucket, %v by the audit trail (%+v)", p, view.Paused("contoso", p), trail[p], events)
		}
	}
}

func readEvents(t *testing.T, js jetstream.JetStream) []Event {
	t.Helper()
	cons, err := js.OrderedConsumer(t.Context(), offboard.StreamResults, jetstream.OrderedConsumerConfig{
		FilterSubjects: []string{offboard.Subjects{}.Control("contoso")},
	})
	if err != nil {
		t.Fatal(err)
	}
	batch, err := cons.FetchNoWait(100)
	if err != nil {
		t.Fatal(err)
	}
	var events []Event
	for m := range batch.Messages() {
		var ev Event
		if err := json.Unmarshal(m.Data(), &ev); err != nil {
			t.Fatal(err)
		}
		events = append(events, ev)
	}
	return events
}
