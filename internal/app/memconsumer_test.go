package app

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/contoso-secops/mde-offboard/internal/queue"
	"github.com/contoso-secops/mde-offboard/offboard"
)

// The tenants' consumers keep their state in memory: the embedded server,
// restarted with the worker, comes back without them, and the worker makes
// them again. These tests set up, on the stopped worker's store, what a
// worker or a replica elsewhere left, and start the worker over it.

// onStore starts the embedded server on the stopped worker's store and
// connects to it; the returned func stops both.
func onStore(t *testing.T, e *env) (jetstream.JetStream, func()) {
	t.Helper()
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
	return js, func() {
		nc.Close()
		ns.Shutdown()
		ns.WaitForShutdown()
	}
}

// TestLedgerDoneWithoutItsResultIsAnswered: the ledger's final entry and
// the result go out side by side; when the entry landed and the result
// did not (the server went down between them), the request comes back and
// its consumer, made again, delivers it anew. The ledger shows it answered
// by this very message, and the stored answer is published, once.
func TestLedgerDoneWithoutItsResultIsAnswered(t *testing.T) {
	t.Parallel()
	e := setup(t, envConfig{tenants: []string{"contoso"}, machines: 1})
	answeredWhileStopped(t, e, func(uint64) []byte {
		return []byte(`{"requestId":"r1","tenant":"contoso","outcome":"created","attempt":1}`)
	})
	c := e.collect("mde.offboard.result.contoso")
	eventually(t, 20*time.Second, "request stream empty", func() bool { return e.streamMsgs(offboard.StreamRequests) == 0 })
	if rs := c.wait(t, 1, 5*time.Second)["contoso/r1"]; len(rs) != 1 || rs[0].Outcome != offboard.OutcomeCreated {
		t.Errorf("results of r1: %+v, want the stored one, once", rs)
	}
	if n := e.apiCalls("offboard"); n != 0 {
		t.Errorf("%d offboard calls for a request the ledger shows answered", n)
	}
}

// TestRemovedTenantsRequestsLetGoAreAnswered: the unrouted consumer let a
// served tenant's requests go while an earlier request (of a tenant nobody
// serves) was still pending with it, so its ack floor is below them. The
// server restarts (the tenant's consumers are lost) and the tenant is
// removed from the tenants file. Its requests are answered unknown_tenant,
// each once: neither left in the stream nor swept away unanswered.
func TestRemovedTenantsRequestsLetGoAreAnswered(t *testing.T) {
	t.Parallel()
	e := setup(t, envConfig{machines: 4, ackWait: 2 * time.Second})
	e.stop()
	js, stop := onStore(t, e)
	ctx := t.Context()
	data, _ := json.Marshal(map[string]any{"requestId": "nobody-1", "machineId": e.tenants["contoso"].machines[0].ID})
	if _, err := js.Publish(ctx, "mde.offboard.request.nobody", data, jetstream.WithMsgID("nobody:nobody-1")); err != nil {
		t.Fatal(err)
	}
	for i, m := range e.tenants["fabrikam"].machines {
		id := fmt.Sprintf("f-%d", i)
		data, _ := json.Marshal(map[string]any{"requestId": id, "machineId": m.ID})
		if _, err := js.Publish(ctx, "mde.offboard.request.fabrikam", data, jetstream.WithMsgID("fabrikam:"+id)); err != nil {
			t.Fatal(err)
		}
	}
	unrouted, err := js.Consumer(ctx, offboard.StreamRequests, queue.ConsumerUnrouted)
	if err != nil {
		t.Fatal(err)
	}
	batch, err := unrouted.Fetch(5, jetstream.FetchMaxWait(5*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for m := range batch.Messages() {
		n++
		if strings.HasSuffix(m.Subject(), ".fabrikam") {
			if err := m.DoubleAck(ctx); err != nil { // let go: fabrikam was served
				t.Fatal(err)
			}
		} // nobody-1: being answered when the server went down, not acked
	}
	if n != 5 {
		t.Fatalf("unrouted delivered %d, want 5", n)
	}
	stop()

	e.opts.Tenants.Tenants = e.opts.Tenants.Tenants[:1] // fabrikam removed
	// Young at the start, fabrikam's requests get their consumers at one
	// of the keeper's looks, which the worker then drains at once (not at
	// its next sweep, 10 minutes away).
	e.opts.Queue.OrphanAge = 2 * time.Second
	e.start()
	c := e.collect("mde.offboard.result.fabrikam")
	c.wait(t, 4, 30*time.Second)
	eventually(t, 10*time.Second, "request stream empty", func() bool { return e.streamMsgs(offboard.StreamRequests) == 0 })
	got := c.wait(t, 4, time.Second) // and no second answer since
	for key, rs := range got {
		if len(rs) != 1 || rs[0].Error == nil || rs[0].Error.Code != offboard.CodeUnknownTenant {
			t.Errorf("%s: %+v, want one unknown_tenant", key, rs)
		}
	}
}

// callingLeft publishes request r1 for contoso's device on the stopped
// worker's store, with the "calling" entry a delivery of it wrote at
// started in the process writer; the returned func stops the store's
// server.
func callingLeft(t *testing.T, e *env, started time.Time, writer string) (jetstream.JetStream, *queue.Entry, func()) {
	t.Helper()
	js, ledger, seq, stop := r1OnStore(t, e)
	m := e.tenants["contoso"].machines[0]
	calling := &queue.Entry{State: queue.StateCalling, Seq: seq, MachineID: m.ID, Started: started.UTC(), Writer: writer}
	if err := ledger.Put(t.Context(), "contoso", "r1", nil, calling); err != nil {
		t.Fatal(err)
	}
	return js, calling, stop
}

// answeredWhileStopped stops e, publishes r1 and stores its answer in the
// ledger (answer gets r1's stream sequence) as a worker that stopped
// before its result was published would have, and starts e again. It
// returns r1's sequence.
func answeredWhileStopped(t *testing.T, e *env, answer func(seq uint64) []byte) uint64 {
	t.Helper()
	e.stop()
	_, ledger, seq, stop := r1OnStore(t, e)
	if err := ledger.Finish(t.Context(), "contoso", "r1", nil, seq, answer(seq)); err != nil {
		t.Fatal(err)
	}
	stop()
	e.start()
	return seq
}

// r1OnStore publishes contoso's request r1 (its first machine) on e's
// store while e is stopped (onStore), opens the ledger there, and
// returns the request's stream sequence.
func r1OnStore(t *testing.T, e *env) (jetstream.JetStream, *queue.Ledger, uint64, func()) {
	t.Helper()
	js, stop := onStore(t, e)
	data, _ := json.Marshal(map[string]any{"requestId": "r1", "machineId": e.tenants["contoso"].machines[0].ID})
	ack, err := js.Publish(t.Context(), "mde.offboard.request.contoso", data, jetstream.WithMsgID("contoso:r1"))
	if err != nil {
		t.Fatal(err)
	}
	ledger, err := queue.NewLedger(t.Context(), js)
	if err != nil {
		t.Fatal(err)
	}
	return js, ledger, ack.Sequence, stop
}

// TestCallUnderWayElsewhereIsNotSentAgain: a request's "calling" entry,
// written by this very message just now in a process it does not name (an
// earlier release's), is a call that may still be under way elsewhere
// (its consumer was made again and delivered it anew). The worker sends
// no second call until an ack wait has passed since that entry; then it
// takes it up as a crashed call, finds no action and calls, once.
func TestCallUnderWayElsewhereIsNotSentAgain(t *testing.T) {
	t.Parallel()
	const ackWait = 4 * time.Second
	e := setup(t, envConfig{tenants: []string{"contoso"}, machines: 1, ackWait: ackWait})
	e.stop()
	_, calling, stop := callingLeft(t, e, time.Now(), "")
	stop()

	e.start()
	c := e.collect("mde.offboard.result.contoso")
	time.Sleep(ackWait / 2)
	if n := e.apiCalls("offboard"); n != 0 {
		t.Fatalf("%d offboard calls %v after another process's call of r1 went out", n, time.Since(calling.Started).Round(100*time.Millisecond))
	}
	wantCalledOnce(t, e, c, "once the ack wait had passed")
}

// TestCallOfALiveProcessIsNotSentAgain: a request's "calling" entry,
// written two ack waits ago by another process, is that process's call
// while the process says the request is in its hands (in a long 429
// pause, say): a delivery anew here sends nothing, however old the entry.
// Once it says the request is not (it left it, or finished its part), the
// call is over, and the request is taken up as a call cut off at once,
// though the process lives on: no action found, one call.
func TestCallOfALiveProcessIsNotSentAgain(t *testing.T) {
	t.Parallel()
	const ackWait = 2 * time.Second
	// Alive, its silence would hold the request too: only its no lets it
	// go.
	e, calling := callingOfAnotherReplica(t, ackWait, [2]string{"other-replica", "other-process"})
	keepAnnouncing(t, e.js, ackWait/2, "other-replica", "other-process") // it lives on
	var holding atomic.Bool
	holding.Store(true)
	asked := make(chan string, 100)
	sub, err := e.nc.Subscribe("mde.offboard.working.other-process", func(m *nats.Msg) {
		asked <- string(m.Data)
		answer := "no"
		if holding.Load() {
			answer = "yes"
		}
		_ = m.Respond([]byte(answer))
	})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = sub.Unsubscribe() }()
	c := e.collect("mde.offboard.result.contoso")
	time.Sleep(2 * ackWait)
	if n := e.apiCalls("offboard"); n != 0 {
		t.Fatalf("%d offboard calls while the process whose call of r1 went out %v ago holds it", n, time.Since(calling.Started).Round(100*time.Millisecond))
	}
	select {
	case q := <-asked:
		if want := fmt.Sprintf("contoso %d", calling.Seq); q != want {
			t.Errorf("asked %q, want %q", q, want)
		}
	default:
		t.Fatal("the process that wrote the entry was never asked")
	}
	holding.Store(false)
	wantCalledOnce(t, e, c, "once the other process had let the request go")
}

// TestCallOfASilentProcess: the process that wrote a request's "calling"
// entry does not answer. While its announcement says it lives (cut off
// from NATS a moment), its call counts as under way; once its
// announcement is withdrawn it is gone, and the request is taken up,
// though another replica, under another process, lives on.
func TestCallOfASilentProcess(t *testing.T) {
	t.Parallel()
	const ackWait = 2 * time.Second
	e, calling := callingOfAnotherReplica(t, ackWait,
		[2]string{"other-replica", "other-process"}, [2]string{"third-replica", "third-process"})
	c := e.collect("mde.offboard.result.contoso")
	stopOther := keepAnnouncing(t, e.js, ackWait/2, "other-replica", "other-process")
	keepAnnouncing(t, e.js, ackWait/2, "third-replica", "third-process") // the third lives on
	for range 4 {
		time.Sleep(ackWait / 2)
		if n := e.apiCalls("offboard"); n != 0 {
			t.Fatalf("%d offboard calls while the process whose call of r1 went out %v ago lives", n, time.Since(calling.Started).Round(100*time.Millisecond))
		}
	}
	stopOther()
	kv, err := e.js.KeyValue(t.Context(), queue.BucketPresence)
	if err != nil {
		t.Fatal(err)
	}
	if err := kv.Delete(t.Context(), "other-replica"); err != nil { // withdrawn: it stopped
		t.Fatal(err)
	}
	wantCalledOnce(t, e, c, "once the other process was gone")
}

// callingOfAnotherReplica starts a worker of contoso (ack wait ackWait,
// announcements counting 3 s after each read) whose request r1 has a
// "calling" entry written two ack waits ago by other-process, and the
// replicas (id, process) announced. They announce themselves as replicas
// of another tenant, so that contoso stays with this worker.
func callingOfAnotherReplica(t *testing.T, ackWait time.Duration, replicas ...[2]string) (*env, *queue.Entry) {
	t.Helper()
	e := setup(t, envConfig{tenants: []string{"contoso"}, machines: 1, ackWait: ackWait})
	e.stop()
	js, calling, stop := callingLeft(t, e, time.Now().Add(-2*ackWait), "other-process")
	for _, r := range replicas {
		announceReplica(t, js, r[0], r[1])
	}
	stop()
	e.opts.PresenceBeat = time.Second
	e.start()
	return e, calling
}

// announceReplica puts the announcement of a replica of another tenant
// (so that it takes none of the test's) made by the process instance.
func announceReplica(t *testing.T, js jetstream.JetStream, id, instance string) {
	t.Helper()
	kv, err := js.KeyValue(t.Context(), queue.BucketPresence)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := kv.Put(t.Context(), id, []byte(`{"tenants":["elsewhere"],"instance":"`+instance+`"}`)); err != nil {
		t.Fatal(err)
	}
}

// keepAnnouncing announces the replica every interval until the test
// ends or the returned func is called, which returns once the last
// announcement is out.
func keepAnnouncing(t *testing.T, js jetstream.JetStream, every time.Duration, id, instance string) (stop func()) {
	t.Helper()
	kv, err := js.KeyValue(t.Context(), queue.BucketPresence)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan struct{})
	go func() {
		defer close(done)
		for ctx.Err() == nil {
			_, _ = kv.Put(ctx, id, []byte(`{"tenants":["elsewhere"],"instance":"`+instance+`"}`))
			select {
			case <-ctx.Done():
			case <-time.After(every):
			}
		}
	}()
	stop = func() {
		cancel()
		<-done
	}
	t.Cleanup(stop)
	return stop
}

// wantCalledOnce waits for r1's one result, created, and checks that one
// offboard call was made, when the test says.
func wantCalledOnce(t *testing.T, e *env, c *collector, when string) {
	t.Helper()
	rs := c.wait(t, 1, 20*time.Second)["contoso/r1"]
	if len(rs) != 1 || rs[0].Outcome != offboard.OutcomeCreated {
		t.Errorf("results of r1: %+v, want one created", rs)
	}
	if n := e.apiCalls("offboard"); n != 1 {
		t.Errorf("%d offboard calls, want 1 %s", n, when)
	}
}
