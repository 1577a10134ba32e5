package app

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

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
