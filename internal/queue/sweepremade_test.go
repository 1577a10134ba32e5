package queue

import (
	"context"
	"sync"
	"testing"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/contoso-secops/mde-offboard/offboard"
)

// remadeAtFirstGet is the request stream, made again (deleted, set up
// anew, two requests published to it) just before its first GetMsg: what
// a sweep meets when a lone server comes back without its store, or an
// operator deletes the stream, between its look at the ack floor and its
// deletes.
type remadeAtFirstGet struct {
	jetstream.Stream
	once   sync.Once
	remake func()
}

func (r *remadeAtFirstGet) GetMsg(ctx context.Context, seq uint64, opts ...jetstream.GetMsgOpt) (*jetstream.RawStreamMsg, error) {
	r.once.Do(r.remake)
	return r.Stream.GetMsg(ctx, seq, opts...)
}

// TestSweepLeavesAStreamMadeAgain: the ack floor read from a tenant's
// consumer tells which requests of the stream it was read from are
// answered. The stream made again since holds other requests at those
// places, not answered yet: the sweep leaves them. Before, it deleted
// them, and they were never answered.
func TestSweepLeavesAStreamMadeAgain(t *testing.T) {
	t.Parallel()
	js, s := ensureContoso(t)
	ctx := t.Context()
	subject := s.Subjects.Request("contoso", offboard.Normal)
	for range 2 {
		if _, err := js.Publish(ctx, subject, []byte(`{"old":true}`)); err != nil {
			t.Fatal(err)
		}
	}
	cons, err := js.Consumer(ctx, offboard.StreamRequests, ConsumerName("contoso", offboard.Normal))
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range fetchNow(t, cons, 2) {
		if err := m.DoubleAck(ctx); err != nil {
			t.Fatal(err)
		}
	}
	stream, err := js.Stream(ctx, offboard.StreamRequests)
	if err != nil {
		t.Fatal(err)
	}
	requests := &remadeAtFirstGet{Stream: stream, remake: func() {
		if err := js.DeleteStream(ctx, offboard.StreamRequests); err != nil {
			t.Fatal(err)
		}
		if _, err := Ensure(ctx, js, s); err != nil {
			t.Fatal(err)
		}
		for range 2 {
			if _, err := js.Publish(ctx, subject, []byte(`{"new":true}`)); err != nil {
				t.Fatal(err)
			}
		}
	}}
	last, _, err := Sweep(ctx, requests, cons, subject)
	info, ierr := stream.Info(ctx)
	if ierr != nil {
		t.Fatal(ierr)
	}
	if info.State.Msgs != 2 {
		t.Errorf("sweep removed up to %d (%v); %d of the 2 requests of the stream made again left, want both", last, err, info.State.Msgs)
	}
}
