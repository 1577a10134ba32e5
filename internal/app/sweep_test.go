package app

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/contoso-secops/mde-offboard/internal/queue"
	"github.com/contoso-secops/mde-offboard/offboard"
)

// TestAnsweredRequestLeftInTheStreamIsSwept: a worker that stopped
// between a request's ack and its delete left the request in the stream
// (limits retention: nothing else removes it), whether a tenant's consumer
// or the unrouted one (a tenant nobody serves) answered it. The next
// worker removes them without a second answer: the unrouted consumer's
// through its sweep, the tenant's when its consumer, made again after the
// embedded server's restart (its state is in memory), delivers it anew
// and the ledger shows it answered. A request caught unacked is answered
// as usual, and the unrouted consumer's acks of served tenants' requests
// (let go, not answered) remove nothing.
func TestAnsweredRequestLeftInTheStreamIsSwept(t *testing.T) {
	t.Parallel()
	e := setup(t, envConfig{tenants: []string{"contoso"}, machines: 2, ackWait: time.Second})
	e.stop()

	// What the stopped worker left: the first request acked but not
	// deleted, the second delivered and never acked.
	ns, err := queue.StartEmbedded(queue.EmbeddedOptions{StoreDir: e.opts.DataDir, Listen: "127.0.0.1:-1"})
	if err != nil {
		t.Fatal(err)
	}
	nc, err := nats.Connect(ns.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	for i, m := range e.tenants["contoso"].machines {
		id := []string{"left-acked", "left-unacked"}[i]
		data, _ := json.Marshal(map[string]any{"requestId": id, "machineId": m.ID})
		if _, err := js.Publish(ctx, "mde.offboard.request.contoso", data, jetstream.WithMsgID("contoso:"+id)); err != nil {
			t.Fatal(err)
		}
	}
	data, _ := json.Marshal(map[string]any{"requestId": "nobody-1", "machineId": e.tenants["contoso"].machines[0].ID})
	if _, err := js.Publish(ctx, "mde.offboard.request.nobody", data, jetstream.WithMsgID("nobody:nobody-1")); err != nil {
		t.Fatal(err)
	}
	unrouted, err := js.Consumer(ctx, offboard.StreamRequests, queue.ConsumerUnrouted)
	if err != nil {
		t.Fatal(err)
	}
	all, err := unrouted.Fetch(3, jetstream.FetchMaxWait(5*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	for m := range all.Messages() { // contoso's let go, nobody's answered
		if err := m.DoubleAck(ctx); err != nil {
			t.Fatal(err)
		}
	}
	// The tenant's consumers keep their state in memory: the restarted
	// server lost them, and the worker would make them again.
	if _, err := queue.Restore(ctx, js, e.opts.Queue); err != nil {
		t.Fatal(err)
	}
	cons, err := js.Consumer(ctx, offboard.StreamRequests, queue.ConsumerName("contoso", offboard.Normal))
	if err != nil {
		t.Fatal(err)
	}
	batch, err := cons.Fetch(2, jetstream.FetchMaxWait(5*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	var got []jetstream.Msg
	for m := range batch.Messages() {
		got = append(got, m)
	}
	if len(got) != 2 {
		t.Fatalf("fetched %d requests, want 2", len(got))
	}
	// The first was answered: its result is in the ledger.
	meta, err := got[0].Metadata()
	if err != nil {
		t.Fatal(err)
	}
	ledger, err := queue.NewLedger(ctx, js)
	if err != nil {
		t.Fatal(err)
	}
	answer := []byte(`{"requestId":"left-acked","tenant":"contoso","outcome":"created","attempt":1}`)
	if err := ledger.Finish(ctx, "contoso", "left-acked", nil, meta.Sequence.Stream, answer); err != nil {
		t.Fatal(err)
	}
	if err := got[0].DoubleAck(ctx); err != nil {
		t.Fatal(err)
	}
	nc.Close()
	ns.Shutdown()
	ns.WaitForShutdown()

	e.opts.StatsEvery = 50 * time.Millisecond
	e.opts.SweepEvery = 200 * time.Millisecond
	e.start()
	c := e.collect("mde.offboard.result.contoso")
	results := c.wait(t, 1, 20*time.Second)
	if rs := results["contoso/left-unacked"]; len(rs) != 1 || rs[0].Outcome != offboard.OutcomeCreated {
		t.Errorf("results of the unacked request: %+v, want one created", rs)
	}
	eventually(t, 10*time.Second, "request stream empty", func() bool { return e.streamMsgs(offboard.StreamRequests) == 0 })
	if rs := c.snapshot()["contoso/left-acked"]; len(rs) != 0 {
		t.Errorf("the acked request was answered again: %+v", rs)
	}
}
