package worker

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/contoso-secops/mde-offboard/internal/queue"
	"github.com/contoso-secops/mde-offboard/offboard"
)

// TestSweepGoesOnAtTheNextStatsPass: more answered requests than one
// sweep removes (a replica of an earlier release acks requests and leaves
// them, 100 a minute at a tenant's quota) are all removed within
// SweepEvery: a sweep that stopped at its bound goes on at the stats
// loop's next pass. Before, the rest waited for the next SweepEvery, and
// a steady flow of them grew in the stream.
func TestSweepGoesOnAtTheNextStatsPass(t *testing.T) {
	t.Parallel()
	const left = 250 // above the 200 a sweep removes from a subject
	e := setupLoopOpts(t, `["100/1m"]`, "", RetryPolicy{}, func(o *Options) {
		o.StatsEvery = 15 * time.Second
		o.SweepEvery = 10 * time.Minute
		ackLeftBehind(t, o.JS, left)
	})
	stream, err := e.js.Stream(t.Context(), offboard.StreamRequests)
	if err != nil {
		t.Fatal(err)
	}
	msgs := func() uint64 {
		info, err := stream.Info(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		return info.State.Msgs
	}
	// The stats loop turns on the fake clock, a pass a tick at most; the
	// next tick waits until the stream's count settles (a sweep under way
	// is done). The tenant's first sweep falls half a SweepEvery after the
	// start.
	start, n := e.clock.Now(), msgs()
	deadline := time.Now().Add(20 * time.Second)
	for n > 0 && e.clock.Since(start) <= 3*e.w.opts.SweepEvery && time.Now().Before(deadline) {
		e.clock.Advance(e.w.opts.StatsEvery)
		for was := n + 1; n != was; {
			time.Sleep(50 * time.Millisecond)
			was, n = n, msgs()
		}
	}
	if took := e.clock.Since(start); n > 0 || took > e.w.opts.SweepEvery {
		t.Errorf("%d of %d answered requests left after %v; want none within %v", n, left, took, e.w.opts.SweepEvery)
	}
}

// ackLeftBehind publishes n requests of contoso and acks them through its
// consumer without deleting them, as a worker of an earlier release did.
func ackLeftBehind(t *testing.T, js jetstream.JetStream, n int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	subject := offboard.Subjects{}.Request("contoso", offboard.Normal)
	for i := range n {
		if _, err := js.Publish(ctx, subject, fmt.Appendf(nil, `{"requestId":"left-%d","machineId":%q}`, i, loopMachine)); err != nil {
			t.Fatal(err)
		}
	}
	cons, err := js.Consumer(ctx, offboard.StreamRequests, queue.ConsumerName("contoso", offboard.Normal))
	if err != nil {
		t.Fatal(err)
	}
	for acked := 0; acked < n; {
		batch, err := cons.Fetch(min(100, n-acked), jetstream.FetchMaxWait(5*time.Second))
		if err != nil {
			t.Fatal(err)
		}
		for m := range batch.Messages() {
			if err := m.DoubleAck(ctx); err != nil {
				t.Fatal(err)
			}
			acked++
		}
		if err := batch.Error(); err != nil {
			t.Fatalf("%d of %d acked: %v", acked, n, err)
		}
	}
}
