package app

import (
	"context"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/contoso-secops/mde-offboard/internal/testwait"
	"github.com/contoso-secops/mde-offboard/offboard"
)

// TestRequestStreamMadeAgainWhileRunning: an operator deletes the request
// stream while a worker runs, and a replica that starts makes it and its
// consumers again, then stops. The running worker pulls from the
// consumers made again; the new stream's sequences start again at 1. A
// bad request of the new stream is answered and copied to the dead
// letters under the new stream's epoch: under the epoch the worker read
// at its start, its result and dead letter took the ids of the old
// stream's first request, and both streams dropped them as repeats, so
// the request had neither.
func TestRequestStreamMadeAgainWhileRunning(t *testing.T) {
	t.Parallel()
	e := setup(t, envConfig{tenants: []string{"contoso"}, machines: 1})
	c := e.collect("mde.offboard.result.>")
	e.publish("mde.offboard.request.contoso", `{"requestId":"bad-1","machineId":5}`, "")
	c.wait(t, 1, 10*time.Second)

	if err := e.js.DeleteStream(t.Context(), offboard.StreamRequests); err != nil {
		t.Fatal(err)
	}
	b, _ := e.replica()
	if err := b.Stop(context.Background()); err != nil {
		t.Fatal(err)
	}
	if ack := e.publish("mde.offboard.request.contoso", `{"requestId":"bad-2","machineId":5}`, ""); ack.Sequence != 1 {
		t.Fatalf("the stream made again stored the request at %d, want 1", ack.Sequence)
	}
	got := c.wait(t, 2, 60*time.Second)
	if rs := got["contoso/bad-2"]; len(rs) != 1 || rs[0].Error == nil || rs[0].Error.Code != offboard.CodeInvalidRequest {
		t.Fatalf("bad-2: results %+v, want one invalid_request", rs)
	}
	c.mu.Lock()
	first, second := c.headers["contoso/bad-1"][0], c.headers["contoso/bad-2"][0]
	c.mu.Unlock()
	if first == second || !strings.HasPrefix(second, "result-seq:contoso:") {
		t.Errorf("results' message ids %q and %q, want two of the form result-seq:contoso:<epoch>:1", first, second)
	}
	eventually(t, 10*time.Second, "a dead letter of each request", func() bool { return e.streamMsgs(offboard.StreamDead) == 2 })
	ids := map[string]bool{}
	for _, m := range e.deadLetters() {
		ids[m.Headers().Get(jetstream.MsgIDHeader)] = true
	}
	if len(ids) != 2 {
		t.Errorf("dead letters' message ids %v, want two", ids)
	}
}

// TestRequestStreamMadeAgainUnderARequest: the request stream is deleted
// and made again while a request, the first of the old stream, waits for
// its offboard call's answer; a request of the new stream, also the first
// there, comes meanwhile. Both are answered, within seconds. The second
// used to be taken for a redelivery of the first (requests under way
// were known by their place in the stream alone) and left to it; the
// first's ack and delete then went to the stream made again, to the
// second's place, and the second was never answered.
func TestRequestStreamMadeAgainUnderARequest(t *testing.T) {
	t.Parallel()
	e, c, release := madeAgainUnderACall(t)
	if ack := e.publish("mde.offboard.request.contoso", map[string]any{"requestId": "new-1", "machineId": e.tenants["contoso"].machines[1].ID}, ""); ack.Sequence != 1 {
		t.Fatalf("the stream made again stored the request at %d, want 1", ack.Sequence)
	}
	time.Sleep(500 * time.Millisecond) // the new request pulled while the first is under way
	release()
	got := c.wait(t, 2, 30*time.Second) // well within the one-minute ack wait
	for _, id := range []string{"contoso/old-1", "contoso/new-1"} {
		if rs := got[id]; len(rs) != 1 || rs[0].Outcome != offboard.OutcomeCreated {
			t.Errorf("%s: results %+v, want one created", id, rs)
		}
	}
}

// TestRequestStreamMadeAgainUnderItsAck: the request stream is deleted
// and made again while a request waits for its offboard call's answer.
// Its ack goes to the consumer made again, which never delivered it and
// does not answer: the request is done once the stream is found made
// again, its ack and delete given up (they would take the place of the
// new stream's request at its place). Before, the ack was sent again
// every 2 s for as long as the worker ran, the request counted in flight.
// A request of the new stream at that place is then answered.
func TestRequestStreamMadeAgainUnderItsAck(t *testing.T) {
	t.Parallel()
	e, c, release := madeAgainUnderACall(t)
	release()
	c.wait(t, 1, 10*time.Second)
	eventually(t, 20*time.Second, "the first request done", func() bool {
		return metricValue(t, e, "mde_offboard_in_flight_requests", map[string]string{"tenant": "contoso"}) == 0
	})
	e.publish("mde.offboard.request.contoso", map[string]any{"requestId": "new-1", "machineId": e.tenants["contoso"].machines[1].ID}, "")
	if rs := c.wait(t, 2, 30*time.Second)["contoso/new-1"]; len(rs) != 1 || rs[0].Outcome != offboard.OutcomeCreated {
		t.Errorf("the new stream's first request: results %+v, want one created", rs)
	}
}

// madeAgainUnderACall starts a worker for contoso (two devices) whose
// offboard calls are answered once release is called, publishes a
// request for the first device, and once its call is under way deletes
// the request stream and has a replica make it again. It returns the
// worker's env and a collector of results.
func madeAgainUnderACall(t *testing.T) (*env, *collector, func()) {
	t.Helper()
	e := setup(t, envConfig{tenants: []string{"contoso"}, machines: 2, noStart: true})
	held, released := make(chan struct{}, 1), make(chan struct{})
	withRewrite(e, func(req *http.Request, _ int, body []byte) []byte {
		if isOffboard(req) {
			select {
			case held <- struct{}{}:
			default:
			}
			select {
			case <-released:
			case <-time.After(time.Minute):
			}
		}
		return body
	})
	e.start()
	c := e.collect("mde.offboard.result.>")
	e.publish("mde.offboard.request.contoso", map[string]any{"requestId": "old-1", "machineId": e.tenants["contoso"].machines[0].ID}, "")
	testwait.For(t, held, 10*time.Second, "the first request's offboard call")
	if err := e.js.DeleteStream(t.Context(), offboard.StreamRequests); err != nil {
		t.Fatal(err)
	}
	b, _ := e.replica() // makes the stream and its consumers again
	if err := b.Stop(context.Background()); err != nil {
		t.Fatal(err)
	}
	var once sync.Once
	return e, c, func() { once.Do(func() { close(released) }) }
}
