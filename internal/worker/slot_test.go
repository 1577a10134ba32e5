package worker

import (
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/contoso-secops/mde-offboard/offboard"
)

// TestSlotFreedBeforeTheResultIsStored: a request whose call is over gives
// its in-flight slot back before its result is stored and acked, so the
// tenant's next call need not wait for that; one that made no call keeps
// it to the end.
func TestSlotFreedBeforeTheResultIsStored(t *testing.T) {
	e := setupLoop(t, `["100/1m"]`, RetryPolicy{})
	ctx := t.Context()
	next := e.scratch(t)
	results := func() uint64 {
		s, err := e.js.Stream(ctx, "MDE_OFFBOARD_RESULTS")
		if err != nil {
			t.Fatal(err)
		}
		info, err := s.Info(ctx)
		if err != nil {
			t.Fatal(err)
		}
		return info.State.Msgs
	}
	tr := e.w.tenants["contoso"]
	for _, c := range []struct {
		attempts  int
		wantFreed bool
	}{{1, true}, {0, false}} {
		msg := next()
		before := results()
		freedWith := int64(-1) // results stored when the slot was freed
		j := e.w.newJob(tr, msg, offboard.Normal)
		j.attempts = c.attempts
		j.free = func() { freedWith = int64(results() - before) }
		e.w.finish(ctx, j, j.failed(offboard.CodeInternal, "test", nil))
		if got := results() - before; got != 1 {
			t.Fatalf("attempts %d: %d results stored, want 1", c.attempts, got)
		}
		switch {
		case c.wantFreed && freedWith != 0:
			t.Errorf("attempts %d: slot freed with %d results stored, want freed before the result (0)", c.attempts, freedWith)
		case !c.wantFreed && freedWith != -1:
			t.Errorf("attempts %d: slot freed by finish; a request that made no call keeps it", c.attempts)
		}
	}
}

// scratch makes a stream of its own and returns a func that hands out a
// fresh delivered message of it: a message for worker code under test,
// which the running worker never sees.
func (e *loopEnv) scratch(t *testing.T) func() jetstream.Msg {
	t.Helper()
	ctx := t.Context()
	if _, err := e.js.CreateStream(ctx, jetstream.StreamConfig{Name: "SCRATCH", Subjects: []string{"scratch"}}); err != nil {
		t.Fatal(err)
	}
	cons, err := e.js.CreateOrUpdateConsumer(ctx, "SCRATCH", jetstream.ConsumerConfig{Durable: "s", AckPolicy: jetstream.AckExplicitPolicy})
	if err != nil {
		t.Fatal(err)
	}
	return func() jetstream.Msg {
		t.Helper()
		if _, err := e.js.Publish(ctx, "scratch", []byte("{}")); err != nil {
			t.Fatal(err)
		}
		msg, err := cons.Next()
		if err != nil {
			t.Fatal(err)
		}
		return msg
	}
}

// TestKeepAliveTicksAndStops: the in-progress ticks come every third of
// the ack wait (minKeepAlive at least), and none comes once stopped (run under -race: the first
// tick reads the timer its start sets).
func TestKeepAliveTicksAndStops(t *testing.T) {
	e := setupLoop(t, `["100/1m"]`, RetryPolicy{})
	msg := e.scratch(t)()
	// A worker of its own with a short ack wait; the running one is not
	// touched.
	w := &Worker{opts: e.w.opts, clock: e.w.clock}
	w.opts.Settings.AckWait = 3 * time.Millisecond
	stop := w.keepAlive(w.newJob(e.w.tenants["contoso"], &countingMsg{Msg: msg}, offboard.Normal))
	// The ticks come every minKeepAlive at most.
	waitFor(t, "an in-progress tick with an ack wait of 3ms", func() bool { return stopAliveCount.Load() > 0 })
	stop()
	// Ticks went to the server as in-progress acks: the message is still
	// pending, not redelivered, and after stop no tick comes.
	cm := stopAliveCount.Load()
	time.Sleep(2 * minKeepAlive)
	if after := stopAliveCount.Load(); after != cm {
		t.Errorf("%d ticks after stop returned", after-cm)
	}
}

var stopAliveCount atomic.Int64

// countingMsg counts its in-progress acks.
type countingMsg struct{ jetstream.Msg }

func (m *countingMsg) InProgress() error {
	stopAliveCount.Add(1)
	return m.Msg.InProgress()
}

// TestFinishingSlotsBoundStoring: a request whose calls are over frees its
// in-flight slot only for a finishing one; with every finishing slot
// taken (NATS slow to store results), it keeps its in-flight slot, so the
// loop takes no more requests.
func TestFinishingSlotsBoundStoring(t *testing.T) {
	t.Parallel()
	slots, finishing := make(chan struct{}, 1), make(chan struct{}, 1)
	take := func() *inFlight {
		slots <- struct{}{} // the loop takes a slot before each request
		return &inFlight{slots: slots, finishing: finishing}
	}
	first := take()
	first.callsOver() // storing its result
	second := take()  // the freed slot went to the next request
	moved := make(chan struct{})
	go func() {
		second.callsOver()
		close(moved)
	}()
	select {
	case <-moved:
		t.Fatal("a second request moved to finishing while the only finishing slot was taken")
	case <-time.After(50 * time.Millisecond):
	}
	if len(slots) != 1 {
		t.Fatalf("in-flight slots taken %d, want 1 (the second request keeps its own)", len(slots))
	}
	first.done() // its result stored
	select {
	case <-moved:
	case <-time.After(5 * time.Second):
		t.Fatal("the second request did not move to finishing once a slot was free")
	}
	second.done()
	if len(slots)+len(finishing) != 0 {
		t.Errorf("slots left taken: %d in flight, %d finishing", len(slots), len(finishing))
	}
}
