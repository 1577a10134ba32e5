package app

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/contoso-secops/mde-offboard/internal/queue"
	"github.com/contoso-secops/mde-offboard/offboard"
)

// TestAnsweredRequestLeftInTheStreamIsSwept: a worker that stopped
// between a request's ack and its delete left the request in the stream
// (limits retention: nothing else removes it), whether a tenant's consumer
// or the unrouted one (a tenant nobody serves) answered it. The next
// worker removes both, and the results stream keeps one answer of each:
// the tenant's consumer, made again after the embedded server's restart
// (its state is in memory), delivers its request anew and the ledger
// shows it answered by that very message; nobody's, on a well-formed
// tenant's subject, waits OrphanAge and gets a consumer of its tenant (it
// could have been let go to one that was lost). Their answers go out again
// under the stored ones' message ids. A request caught unacked is answered
// as usual.
func TestAnsweredRequestLeftInTheStreamIsSwept(t *testing.T) {
	t.Parallel()
	e := setup(t, envConfig{tenants: []string{"contoso"}, machines: 2, ackWait: time.Second})
	e.stop()

	// What the stopped worker left: the first request answered and acked
	// but not deleted, the second delivered and never acked; nobody's
	// answered by the unrouted consumer, not deleted.
	js, stop := onStore(t, e)
	ctx := t.Context()
	var seqs []uint64
	for i, m := range e.tenants["contoso"].machines {
		id := []string{"left-acked", "left-unacked"}[i]
		data, _ := json.Marshal(map[string]any{"requestId": id, "machineId": m.ID})
		ack, err := js.Publish(ctx, "mde.offboard.request.contoso", data, jetstream.WithMsgID("contoso:"+id))
		if err != nil {
			t.Fatal(err)
		}
		seqs = append(seqs, ack.Sequence)
	}
	data, _ := json.Marshal(map[string]any{"requestId": "nobody-1", "machineId": e.tenants["contoso"].machines[0].ID})
	nobody, err := js.Publish(ctx, "mde.offboard.request.nobody", data, jetstream.WithMsgID("nobody:nobody-1"))
	if err != nil {
		t.Fatal(err)
	}
	requests, err := js.Stream(ctx, offboard.StreamRequests)
	if err != nil {
		t.Fatal(err)
	}
	epoch := requests.CachedInfo().Created.UnixNano()
	stored := map[string][]byte{
		offboard.ResultMsgID("contoso", "left-acked", 1):                                  []byte(`{"requestId":"left-acked","tenant":"contoso","outcome":"created","attempt":1}`),
		offboard.SeqResultMsgID("nobody", offboard.Seq{Epoch: epoch, N: nobody.Sequence}): []byte(`{"requestId":"nobody-1","tenant":"nobody","outcome":"failed","error":{"code":"unknown_tenant"}}`),
	}
	for id, answer := range stored {
		var r offboard.Result
		_ = json.Unmarshal(answer, &r)
		if _, err := js.Publish(ctx, "mde.offboard.result."+r.Tenant, answer, jetstream.WithMsgID(id)); err != nil {
			t.Fatal(err)
		}
	}
	ledger, err := queue.NewLedger(ctx, js)
	if err != nil {
		t.Fatal(err)
	}
	if err := ledger.Finish(ctx, "contoso", "left-acked", nil, seqs[0], stored[offboard.ResultMsgID("contoso", "left-acked", 1)]); err != nil {
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
	// server lost them; made here as the worker makes them.
	if _, err := queue.Restore(ctx, js, queue.Settings{Tenants: []string{"contoso"}}); err != nil {
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
	if err := got[0].DoubleAck(ctx); err != nil {
		t.Fatal(err)
	}
	stop()

	e.opts.Queue.OrphanAge = 100 * time.Millisecond
	e.opts.StatsEvery = 50 * time.Millisecond
	e.opts.SweepEvery = 200 * time.Millisecond
	e.start()
	c := e.collect("mde.offboard.result.>")
	eventually(t, 20*time.Second, "request stream empty", func() bool { return e.streamMsgs(offboard.StreamRequests) == 0 })
	results := c.wait(t, 3, 5*time.Second)
	if rs := results["contoso/left-unacked"]; len(rs) != 1 || rs[0].Outcome != offboard.OutcomeCreated {
		t.Errorf("results of the unacked request: %+v, want one created", rs)
	}
	for _, key := range []string{"contoso/left-acked", "nobody/nobody-1"} {
		if rs := results[key]; len(rs) != 1 {
			t.Errorf("%s: %d results in the results stream, want the stored one alone", key, len(rs))
		}
	}
	if n := e.apiCalls("offboard"); n != 1 {
		t.Errorf("%d offboard calls, want 1 (the unacked request's)", n)
	}
}
