package worker

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jonboulle/clockwork"
	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/zap"

	"github.com/contoso-secops/mde-offboard/internal/queue"
	"github.com/contoso-secops/mde-offboard/internal/queue/natstest"
	"github.com/contoso-secops/mde-offboard/offboard"
)

// TestUnroutedConsumerMissingIsMadeAgain: the unrouted consumer gone
// (deleted by hand, or not there after a lone server's restart) ends
// every pull at once with no responders, in the pull's own error rather
// than the fetch's. The drain went round at once and pulled without
// pause, thousands of times a second, until the keeper's look made the
// consumer again up to a minute later, while the requests of tenants
// nobody serves went unanswered. It waits a second between such pulls
// (on a fake clock that stands still: one pull in
// three seconds), and asks for the
// consumer to be made again at once, as a tenant's loop does.
func TestUnroutedConsumerMissingIsMadeAgain(t *testing.T) {
	t.Parallel()
	nc, js := natstest.Connect(t)
	if _, err := queue.Ensure(t.Context(), js, queue.Settings{Tenants: []string{"contoso"}}); err != nil {
		t.Fatal(err)
	}
	cons, err := js.Consumer(t.Context(), offboard.StreamRequests, queue.ConsumerUnrouted)
	if err != nil {
		t.Fatal(err)
	}
	if err := js.DeleteConsumer(t.Context(), offboard.StreamRequests, queue.ConsumerUnrouted); err != nil {
		t.Fatal(err)
	}
	var lost atomic.Int64
	w := &Worker{clock: clockwork.NewFakeClock(), opts: Options{ConsumerLost: func() { lost.Add(1) }}}
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Second)
	defer cancel()
	sent := nc.Stats().OutMsgs
	w.drain(ctx, zap.NewNop(), cons, func(m jetstream.Msg) { t.Errorf("handed %s", m.Subject()) })
	if n := nc.Stats().OutMsgs - sent; n > 4 { // a pull and a look at the consumer
		t.Errorf("%d messages sent in 3 s of draining a deleted consumer with the clock standing still, want 2", n)
	}
	if lost.Load() == 0 {
		t.Error("the unrouted consumer's pull found it missing and did not ask for it to be made again")
	}
}
