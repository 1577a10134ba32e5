package worker

import (
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/contoso-secops/mde-offboard/internal/queue"
	"github.com/contoso-secops/mde-offboard/offboard"
)

// TestResultCountedWhenItsDeadLetterFailsAtFirst: a failed request's
// result is stored but its dead letter is not (the dead-letter stream
// away); the request comes back, and its result, stored already, is
// dropped as a repeat. It is counted once all the same.
func TestResultCountedWhenItsDeadLetterFailsAtFirst(t *testing.T) {
	t.Parallel()
	e := setupLoop(t, `["100/1m"]`, RetryPolicy{})
	if err := e.js.DeleteStream(t.Context(), offboard.StreamDead); err != nil {
		t.Fatal(err)
	}
	m := nats.NewMsg(offboard.Subjects{}.Request("contoso", offboard.Normal))
	m.Data = []byte(`{"requestId":"bad id","machineId":"` + loopMachine + `"}`)
	if _, err := e.js.PublishMsg(t.Context(), m); err != nil {
		t.Fatal(err)
	}
	e.nextResult(t, "bad id") // stored, its dead letter refused
	// Left for redelivery, and taken again (the dead letter refused
	// again) before the dead-letter stream is back.
	cons, err := e.js.Consumer(t.Context(), offboard.StreamRequests, queue.ConsumerName("contoso", offboard.Normal))
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(20 * time.Second)
	for {
		info, err := cons.Info(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		if info.Delivered.Consumer >= 2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the request was not taken again")
		}
		time.Sleep(20 * time.Millisecond)
	}
	if _, err := queue.Ensure(t.Context(), e.js, e.w.opts.Settings); err != nil {
		t.Fatal(err)
	}
	dead, err := e.js.Stream(t.Context(), offboard.StreamDead)
	if err != nil {
		t.Fatal(err)
	}
	for {
		info, err := dead.Info(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		if info.State.Msgs == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("no dead letter stored")
		}
		time.Sleep(20 * time.Millisecond)
	}
	// The count follows the store of the dead letter, in the same handler:
	// wait until the request is acked.
	requests, err := e.js.Stream(t.Context(), offboard.StreamRequests)
	if err != nil {
		t.Fatal(err)
	}
	for {
		info, err := requests.Info(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		if info.State.Msgs == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("request not answered")
		}
		time.Sleep(20 * time.Millisecond)
	}
	if n := testutil.ToFloat64(e.w.m.Results.WithLabelValues("contoso", offboard.OutcomeFailed, offboard.CodeInvalidRequest)); n != 1 {
		t.Errorf("results counted %v, want 1", n)
	}
}
