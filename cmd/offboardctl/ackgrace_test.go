package main

import (
	"context"
	"errors"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/contoso-secops/mde-offboard/internal/campaign"
	"github.com/contoso-secops/mde-offboard/internal/queue/natstest"
	"github.com/contoso-secops/mde-offboard/internal/testwait"
	"github.com/contoso-secops/mde-offboard/offboard"
)

// unansweredAck is a publish whose acknowledgement never comes: a server
// gone, the client waiting to reconnect.
type unansweredAck struct{}

func (unansweredAck) Ok() <-chan *jetstream.PubAck { return nil }
func (unansweredAck) Err() <-chan error            { return nil }
func (unansweredAck) Msg() *nats.Msg               { return nil }

// An interrupted run waits its one grace for all of the acknowledgements
// outstanding, not for the first alone: after the grace had run out for
// the first, each later one was awaited until its publish timed out (30 s
// each with a server gone), and then counted not published rather than
// sent unconfirmed.
func TestInterruptedRunGivesUpOnEveryUnansweredAck(t *testing.T) {
	t.Parallel()
	r := &campaignRun{}
	ctx, cancel := context.WithCancel(t.Context())
	cancel() // interrupted
	const pending = 3
	acks := make(chan pendingAck, pending)
	for n := range pending {
		acks <- pendingAck{row: n + 1, f: unansweredAck{}}
	}
	close(acks)
	done := make(chan struct{})
	go func() { defer close(done); r.collectAcks(ctx, acks) }()
	testwait.For(t, done, 4*ackGrace, "the acknowledgements given up after the grace")
	if n := r.unconfirmed.Load(); n != pending {
		t.Errorf("%d publishes counted sent unconfirmed, want %d", n, pending)
	}
}

// A row whose publish no stream answers (the request stream deleted, or
// without a leader for longer than an election takes) is published again
// for a bounded time only, then counted not published: the run ends,
// telling to run it again, as it did before rows were published again,
// where it would otherwise publish it again until interrupted.
func TestRowPublishedAgainForABoundedTime(t *testing.T) {
	t.Parallel()
	nc, _ := natstest.Connect(t) // no stream takes the subject
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	rows, err := campaign.NewRows("gone", 1, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = rows.Close() })
	r := &campaignRun{js: js, rows: rows, againFor: 500 * time.Millisecond}
	m := nats.NewMsg(offboard.Subjects{}.Request(tenant, offboard.Bulk))
	m.Data = []byte(`{}`)
	f, err := js.PublishMsgAsync(m)
	if err != nil {
		t.Fatal(err)
	}
	acks := make(chan pendingAck, 1)
	acks <- pendingAck{row: 1, f: f}
	close(acks)
	done := make(chan struct{})
	go func() { defer close(done); r.collectAcks(t.Context(), acks) }()
	testwait.For(t, done, 10*time.Second, "the row given up")
	if c := rows.Counts(); c.Unpublished != 1 || !errors.Is(r.pubError(), jetstream.ErrNoStreamResponse) {
		t.Errorf("counts %+v, error %v; want the row not published, no stream answering", c, r.pubError())
	}
}

// The bound on publishing again is the run's, not each row's: the rows'
// answers are awaited one after the other, and each row given its own
// bound from when its turn came, a stream gone kept a run of N rows for
// N times the bound (30 s each: over eight hours for a thousand rows).
// Past the bound with no publish answered, every row left unanswered is
// given up at once.
func TestRowsPublishedAgainForOneBoundedTime(t *testing.T) {
	t.Parallel()
	nc, _ := natstest.Connect(t) // no stream takes the subject
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	const n = 10
	rows, err := campaign.NewRows("gone", n, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = rows.Close() })
	const bound = 500 * time.Millisecond
	r := &campaignRun{js: js, rows: rows, againFor: bound}
	// Row by row, it took n times the bound and its pauses: 7-8 s.
	publishAndCollect(t, js, r, offboard.Subjects{}.Request(tenant, offboard.Bulk), n)
	if c := rows.Counts(); c.Unpublished != n {
		t.Errorf("counts %+v; want the %d rows not published", c, n)
	}
}

// failedAck is a publish that failed with err, its message not kept.
type failedAck struct{ err chan error }

func newFailedAck(err error) failedAck {
	ch := make(chan error, 1)
	ch <- err
	return failedAck{ch}
}

func (failedAck) Ok() <-chan *jetstream.PubAck { return nil }
func (a failedAck) Err() <-chan error          { return a.err }
func (failedAck) Msg() *nats.Msg               { return nil }

// Rows whose publishes failed with errors of different types (the
// connection lost under some, the acknowledgement of others timed out,
// the stream refused one) are each counted not published, and the first
// error is told. The second such error crashed the run, a stack in place
// of its report: the first error was kept in an atomic.Value, which
// panics at a value of another type.
func TestRowsNotPublishedForErrorsOfSeveralTypes(t *testing.T) {
	t.Parallel()
	rows, err := campaign.NewRows("mixed", 3, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = rows.Close() })
	r := &campaignRun{rows: rows}
	acks := make(chan pendingAck, 3)
	acks <- pendingAck{row: 1, f: newFailedAck(nats.ErrDisconnected)}
	acks <- pendingAck{row: 2, f: newFailedAck(jetstream.ErrAsyncPublishTimeout)}
	acks <- pendingAck{row: 3, f: newFailedAck(&jetstream.APIError{Code: 503, ErrorCode: 10047, Description: "maximum bytes exceeded"})}
	close(acks)
	r.collectAcks(t.Context(), acks)
	if c := rows.Counts(); c.Unpublished != 3 || !errors.Is(r.pubError(), nats.ErrDisconnected) {
		t.Errorf("counts %+v, error %v; want the 3 rows not published, the connection lost", c, r.pubError())
	}
}

// Rows whose publish went unanswered past the bound (taken by a stream
// leader lost with them, say) may have been stored: the run's last line
// says they are not known to be published and that running it again
// publishes those that were not, where it said they could not be
// published, while the worker was offboarding their devices.
func TestRowsUnansweredPastTheBoundAreNotKnownPublished(t *testing.T) {
	t.Parallel()
	nc, _ := natstest.Connect(t)
	subject := offboard.Subjects{}.Request(tenant, offboard.Bulk)
	// Takes each publish and never answers.
	if _, err := nc.Subscribe(subject, func(*nats.Msg) {}); err != nil {
		t.Fatal(err)
	}
	js, err := jetstream.New(nc, jetstream.WithPublishAsyncTimeout(100*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	const n = 3
	dir := t.TempDir()
	rows, err := campaign.NewRows("lost", n, dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = rows.Close() })
	var stdout strings.Builder
	r := &campaignRun{c: &cli{stdout: &stdout}, js: js, rows: rows, againFor: 300 * time.Millisecond,
		src: writeFile(t, dir, "lost.csv", "computerDnsName\npc-1\npc-2\npc-3\n"),
		f:   runFlags{name: "lost", tenant: tenant, report: filepath.Join(dir, "r.csv")}}
	publishAndCollect(t, js, r, subject, n)
	err = r.finish(nil)
	if c := rows.Counts(); c.Unpublished != n || err == nil || !strings.Contains(err.Error(), "3 rows not known to be published") ||
		!strings.Contains(err.Error(), "may have been stored") || strings.Contains(err.Error(), "could not be published") {
		t.Errorf("counts %+v, error %v; want the %d rows told not known to be published", c, err, n)
	}
}

// publishAndCollect publishes n rows of {} on subject and has r collect
// their acknowledgements, which must be over within 4 s: the rows given
// up once r's bound is past.
func publishAndCollect(t *testing.T, js jetstream.JetStream, r *campaignRun, subject string, n int) {
	t.Helper()
	acks := make(chan pendingAck, n)
	for i := range n {
		m := nats.NewMsg(subject)
		m.Data = []byte(`{}`)
		f, err := js.PublishMsgAsync(m)
		if err != nil {
			t.Fatal(err)
		}
		acks <- pendingAck{row: i + 1, f: f}
	}
	close(acks)
	done := make(chan struct{})
	go func() { defer close(done); r.collectAcks(t.Context(), acks) }()
	testwait.For(t, done, 4*time.Second, "the rows given up once the bound is past")
}
