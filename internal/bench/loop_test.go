package bench

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/contoso-secops/mde-offboard/internal/queue/natstest"
)

// TestRunLoopStopsAtTheFirstFailure: a reference loop of BenchmarkOverhead
// whose step fails stops at once with the step's error; it did not count
// the failed request and pulled on until its five-minute bound.
func TestRunLoopStopsAtTheFirstFailure(t *testing.T) {
	t.Parallel()
	_, js := natstest.Connect(t)
	h := &harness{tb: t, js: js}
	consumers := h.loopRequests(t, "failing", jetstream.LimitsPolicy, []string{"a", "b"}, 5, 10)
	boom := errors.New("boom")
	var steps atomic.Int64
	start := time.Now()
	_, err := h.runLoop(t, "failing", consumers, 5, 4, func(ctx context.Context, _ int, msg jetstream.Msg) error {
		if steps.Add(1) == 3 {
			return boom
		}
		return msg.DoubleAck(ctx)
	})
	if !errors.Is(err, boom) {
		t.Fatalf("loop error %v, want the step's", err)
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Errorf("the loop stopped %v after it started", d)
	}
}
