package queue

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/contoso-secops/mde-offboard/internal/queue/natstest"
	"github.com/contoso-secops/mde-offboard/offboard"
)

// unansweredStream is a stream whose consumers made have their first
// pulls answered "no responders" (natstest.Unanswered).
type unansweredStream struct {
	jetstream.Stream
	u *natstest.Unanswered
}

func (s unansweredStream) CreateConsumer(ctx context.Context, cfg jetstream.ConsumerConfig) (jetstream.Consumer, error) {
	c, err := s.Stream.CreateConsumer(ctx, cfg)
	if err != nil {
		return nil, err
	}
	return s.u.Wrap(c), nil
}

// TestReadUndeliveredRidesOutPullsUnanswered: the reader a cancel's read
// of the requests not delivered yet makes is pulled at once; on a cluster
// the server may answer the first pulls "no responders" until it learns
// which server leads the reader. The read sends them again and reads
// every request; before, it failed, and the cancel's pass with it. A
// reader that stays unanswered still fails the read, within seconds.
func TestReadUndeliveredRidesOutPullsUnanswered(t *testing.T) {
	t.Parallel()
	_, js := connect(t)
	s := Settings{Tenants: []string{"contoso"}}
	if _, err := Ensure(t.Context(), js, s); err != nil {
		t.Fatal(err)
	}
	for i := range 20 {
		if _, err := js.Publish(t.Context(), s.WithDefaults().Subjects.Request("contoso", offboard.Bulk), fmt.Appendf(nil, "%d", i)); err != nil {
			t.Fatal(err)
		}
	}
	requests, err := js.Stream(t.Context(), offboard.StreamRequests)
	if err != nil {
		t.Fatal(err)
	}
	cons, err := js.Consumer(t.Context(), offboard.StreamRequests, ConsumerName("contoso", offboard.Bulk))
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		unanswered int
		wantErr    bool
	}{{3, false}, {1000, true}} {
		u := natstest.NewUnanswered(t, js, offboard.StreamRequests, c.unanswered)
		start := time.Now()
		read, err := ReadUndelivered(t.Context(), unansweredStream{requests, u}, cons, func(*jetstream.RawStreamMsg) {})
		took := time.Since(start)
		t.Logf("%d pulls unanswered: read %d in %v, %v", u.Sent(), read, took.Round(time.Millisecond), err)
		switch {
		case c.wantErr && !errors.Is(err, nats.ErrNoResponders):
			t.Errorf("a reader never answered: %v, want no responders", err)
		case c.wantErr && took > 5*time.Second:
			t.Errorf("a reader never answered failed the read after %v", took)
		case !c.wantErr && (err != nil || read != 20):
			t.Errorf("%d pulls unanswered: read %d of 20: %v", c.unanswered, read, err)
		}
	}
}

// TestPublishedResultRidesOutPullsUnanswered: the look for a result by
// its message id makes a consumer of its own and pulls it at once: pulls
// answered "no responders" for a moment (a cluster's server not knowing
// the consumer's leader yet) are sent again, and the result is found.
// Before, the look failed, and the request delivered again with it.
func TestPublishedResultRidesOutPullsUnanswered(t *testing.T) {
	t.Parallel()
	_, js := connect(t)
	s := Settings{Tenants: []string{"contoso"}}
	if _, err := Ensure(t.Context(), js, s); err != nil {
		t.Fatal(err)
	}
	subject := s.WithDefaults().Subjects.Result("contoso")
	since := time.Now().Add(-time.Minute)
	for i := range 5 {
		// The one looked for is not the last: found by a pull.
		if _, err := js.Publish(t.Context(), subject, fmt.Appendf(nil, `{"n":%d}`, i), jetstream.WithMsgID(fmt.Sprintf("r-%d", i))); err != nil {
			t.Fatal(err)
		}
	}
	results, err := js.Stream(t.Context(), offboard.StreamResults)
	if err != nil {
		t.Fatal(err)
	}
	u := natstest.NewUnanswered(t, js, offboard.StreamResults, 3)
	seq, err := seqOfMsgID(t.Context(), unansweredStream{results, u}, subject, "r-2", since)
	if err != nil || seq == 0 {
		t.Fatalf("after %d pulls unanswered: sequence %d, %v", u.Sent(), seq, err)
	}
	m, err := results.GetMsg(t.Context(), seq)
	if err != nil || string(m.Data) != `{"n":2}` {
		t.Fatalf("found %d: %v", seq, err)
	}
}

// unansweredJetStream is a JetStream whose consumers made have their
// first pulls unanswered (natstest.Unanswered).
type unansweredJetStream struct {
	jetstream.JetStream
	u *natstest.Unanswered
}

func (j unansweredJetStream) CreateConsumer(ctx context.Context, stream string, cfg jetstream.ConsumerConfig) (jetstream.Consumer, error) {
	c, err := j.JetStream.CreateConsumer(ctx, stream, cfg)
	if err != nil {
		return nil, err
	}
	return j.u.Wrap(c), nil
}

// TestScanTrackedRidesOutAPullUnanswered: the consumer a scan of the
// followed actions makes is pulled at once; on a cluster the server may
// answer that pull "no responders" until it learns which server leads
// the consumer, and the client, reading it as a stream of messages, hears
// nothing of it. The scan, seeing the consumer hold no pull of its while
// it waits, pulls again and reads every state, within seconds; before,
// it waited 30 s for the beats and failed ("no heartbeat received"), and
// the tracker's load with it.
func TestScanTrackedRidesOutAPullUnanswered(t *testing.T) {
	t.Parallel()
	_, js := connect(t)
	if _, err := Ensure(t.Context(), js, Settings{Tenants: []string{"contoso"}}); err != nil {
		t.Fatal(err)
	}
	const n = 20
	storeTracked(t, js, "contoso", n)
	l, err := NewLedger(t.Context(), js)
	if err != nil {
		t.Fatal(err)
	}
	u := natstest.NewUnanswered(t, js, "KV_"+offboard.BucketLedger, 1)
	l.js = unansweredJetStream{JetStream: js, u: u}
	ctx, cancel := context.WithTimeout(t.Context(), 40*time.Second)
	defer cancel()
	start, read := time.Now(), 0
	err = l.ScanTracked(ctx, "contoso", func([]byte) error { read++; return nil })
	took := time.Since(start)
	if err != nil || read != n || u.Sent() != 1 {
		t.Fatalf("scan: %d of %d states read, %d pulls unanswered, after %v: %v", read, n, u.Sent(), took, err)
	}
	if took > 3*trackScanUnpulled {
		t.Errorf("scan took %v; want at most %v", took, 3*trackScanUnpulled)
	}
}
