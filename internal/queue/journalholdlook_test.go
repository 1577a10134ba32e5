package queue

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/jonboulle/clockwork"
	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/zap"

	"github.com/contoso-secops/mde-offboard/internal/limiter"
	"github.com/contoso-secops/mde-offboard/internal/testwait"
	"github.com/contoso-secops/mde-offboard/offboard"
)

// TestHoldDuringALookOutlastsIt: the feed is cut off, its consumer
// deleted, and calls are held while the quota stream is looked at; the
// consumer is deleted again (the stream deleted and made anew) while that
// look is under way, and the look then answers the stream as it was,
// which it still was when the look was made. Calls stay held until the
// stream is looked at again. Before, the first look's answer let calls
// start at once, before the second cut was looked at.
func TestHoldDuringALookOutlastsIt(t *testing.T) {
	t.Parallel()
	js, s := contosoQueue(t)
	journal, err := NewQuotaJournal(t.Context(), js, s.Subjects)
	if err != nil {
		t.Fatal(err)
	}
	shared := limiter.NewShared(limiter.SharedOptions{Journal: journal, Clock: clockwork.NewRealClock(), Wall: clockwork.NewRealClock(),
		Lease: 2 * time.Second, Margin: 100 * time.Millisecond})
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		shared.Close(ctx)
	})
	shared.Tenant("contoso").Add("offboard", []limiter.Window{{Count: 1, Length: time.Minute}})
	followCaughtUp(t, js, s.Subjects, shared, time.Hour)
	stream, err := js.Stream(t.Context(), offboard.StreamQuota)
	if err != nil {
		t.Fatal(err)
	}
	info, err := stream.Info(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	looked := &heldLooks{Stream: stream, asked: make(chan struct{}), answer: make(chan struct{})}
	cut := make(chan struct{}, 1)
	ctx, cancel := context.WithCancel(t.Context())
	var checks sync.WaitGroup
	checks.Go(func() { checkAfterCuts(ctx, looked, quotaKind(s.Subjects), info.Created, shared, cut, zap.NewNop()) })
	defer func() {
		cancel()
		checks.Wait()
	}()

	shared.Hold()
	cut <- struct{}{}
	testwait.For(t, looked.asked, 10*time.Second, "the look after the first cut")
	shared.Hold() // the consumer deleted again, the look under way
	cut <- struct{}{}
	tell(t, looked.answer, "the first look's answer")
	testwait.For(t, looked.asked, 10*time.Second, "the look after the second cut")
	if err := shared.Healthy(); err == nil {
		t.Error("calls may start before the stream is looked at after the second cut")
	}
	tell(t, looked.answer, "the second look's answer")
	for end := time.Now().Add(10 * time.Second); shared.Healthy() != nil; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(end) {
			t.Fatalf("calls still held after the stream was found the same: %v", shared.Healthy())
		}
	}
}

// tell sends on ch within 10 s, or fails the test.
func tell(t *testing.T, ch chan<- struct{}, what string) {
	t.Helper()
	select {
	case ch <- struct{}{}:
	case <-time.After(10 * time.Second):
		t.Fatalf("%s not taken within 10s", what)
	}
}

// heldLooks is a stream whose Info says it was asked (asked), then
// answers once told to (answer).
type heldLooks struct {
	jetstream.Stream
	asked, answer chan struct{}
}

func (h *heldLooks) Info(ctx context.Context, opts ...jetstream.StreamInfoOpt) (*jetstream.StreamInfo, error) {
	select {
	case h.asked <- struct{}{}:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	select {
	case <-h.answer:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	return h.Stream.Info(ctx, opts...)
}
