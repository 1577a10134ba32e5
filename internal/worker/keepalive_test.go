package worker

import (
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/contoso-secops/mde-offboard/offboard"
)

// TestKeepAliveOfATinyAckWaitIsPaced: with an ack wait under 3ns (which
// only the worker's options, not its flags, let through), a third of it
// is 0: each in-progress tick set the next at once, a loop of messages to
// the server for every request under way. The ticks come no more often
// than minKeepAlive. The ticks are paced in real time (they pace messages to the server), so the
// test reads them as they come.
func TestKeepAliveOfATinyAckWaitIsPaced(t *testing.T) {
	e := setupLoop(t, `["100/1m"]`, RetryPolicy{})
	msg := e.scratch(t)()
	w := &Worker{opts: e.w.opts, clock: e.w.clock}
	w.opts.Settings.AckWait = time.Nanosecond
	counted := &tickingMsg{Msg: msg}
	stop := w.keepAlive(w.newJob(e.w.tenants["contoso"], counted, offboard.Normal))
	waitFor(t, "the first in-progress tick", func() bool { return counted.n.Load() > 0 })
	// Paced, a third tick comes 200ms after the first at the soonest.
	first := time.Now()
	for counted.n.Load() < 3 && time.Since(first) < 50*time.Millisecond {
		time.Sleep(time.Millisecond)
	}
	stop()
	if n := counted.n.Load(); n >= 3 {
		t.Errorf("%d in-progress ticks within %v of the first, want them %v apart", n, time.Since(first).Round(time.Millisecond), minKeepAlive)
	}
}

// tickingMsg counts its in-progress acks.
type tickingMsg struct {
	jetstream.Msg
	n atomic.Int64
}

func (m *tickingMsg) InProgress() error {
	m.n.Add(1)
	return m.Msg.InProgress()
}
