package queue

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/jonboulle/clockwork"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/contoso-secops/mde-offboard/internal/limiter"
	"github.com/contoso-secops/mde-offboard/offboard"
)

// TestJournalMadeAnewBelowWhereTheFeedBegan: the quota stream is deleted
// and made anew under a running process whose feed began past the first
// entries of the old stream, as it does over any journal that has run
// for longer than its longest window (here, entries purged before it
// started). The process writes the tenant's first entry in the new
// stream; another process's call follows, numbered below where the feed
// began, and the feed never brings it. The process must not call while
// that call is under way in a window of one. Before, an entry numbered
// below the feed's first was taken for one older than anything that
// counts, and both called.
func TestJournalMadeAnewBelowWhereTheFeedBegan(t *testing.T) {
	j := newOneCallJournal(t)
	js := j.js
	other, err := NewQuotaJournal(t.Context(), js, j.s.Subjects)
	if err != nil {
		t.Fatal(err)
	}
	var last uint64
	for range 20 { // entries of another tenant, gone before the process starts
		if last, err = other.Append(t.Context(), "fabrikam", limiter.Event{Writer: "old"}, last); err != nil {
			t.Fatal(err)
		}
	}
	st, err := js.Stream(t.Context(), offboard.StreamQuota)
	if err != nil {
		t.Fatal(err)
	}
	if err := st.Purge(t.Context()); err != nil {
		t.Fatal(err)
	}
	a := j.start() // its feed begins past 20
	p, err := j.record(a)
	if err != nil {
		t.Fatal(err)
	}
	p.CompleteNow()
	j.clock.Advance(2 * time.Minute)
	if err := j.madeAnewUnder(a); !errors.Is(err, limiter.ErrJournalEntryGone) {
		t.Fatalf("a's call: %v, want ErrJournalEntryGone", err)
	}
}

// oneCallJournal is a quota journal whose tenant has a window of one
// call a minute, under a fake clock, and the processes that follow it.
type oneCallJournal struct {
	t     *testing.T
	js    jetstream.JetStream
	s     Settings
	clock *clockwork.FakeClock
	ws    []limiter.Window
}

func newOneCallJournal(t *testing.T) *oneCallJournal {
	js, s := contosoQueue(t)
	return &oneCallJournal{t: t, js: js, s: s, clock: clockwork.NewFakeClockAt(time.Date(2026, 11, 24, 0, 0, 0, 0, time.UTC)),
		ws: []limiter.Window{{Count: 1, Length: time.Minute}}}
}

// start is a process following the journal.
func (j *oneCallJournal) start() *limiter.Limiter {
	var l *limiter.Limiter
	followedTenant(j.t, j.js, j.s, j.clock, func(tn *limiter.Tenant) { l = tn.Add("offboard", j.ws) })
	return l
}

// errNoPermit is record's error when l hands out no permit.
var errNoPermit = errors.New("no permit")

// record enters a call of l; it returns the permit, or nil and why not.
func (j *oneCallJournal) record(l *limiter.Limiter) (*limiter.Permit, error) {
	p, _ := l.TryAcquire(j.clock.Now())
	if p == nil {
		return nil, errNoPermit
	}
	ctx, cancel := context.WithTimeout(j.t.Context(), 5*time.Second)
	defer cancel()
	if _, err := p.Record(ctx); err != nil {
		p.Release()
		return nil, err
	}
	return p, nil
}

// recordHeld is record once l's process no longer holds its calls while
// it looks at a stream its feed was cut off from (within 10 s).
func (j *oneCallJournal) recordHeld(l *limiter.Limiter) (*limiter.Permit, error) {
	for end := time.Now().Add(10 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		p, err := j.record(l)
		if !errors.Is(err, errNoPermit) || time.Now().After(end) {
			return p, err
		}
	}
}

// madeAnewUnder deletes the quota stream and makes it anew under the
// running process a, whose last call has ended; a writes the tenant's
// first entry in the new stream, another process's call follows and is
// under way. It returns the error of a's next call, which must not be
// entered in the window of one (a test failure if it is).
func (j *oneCallJournal) madeAnewUnder(a *limiter.Limiter) error {
	t := j.t
	t.Helper()
	time.Sleep(300 * time.Millisecond) // the last end written and read
	if err := j.js.DeleteStream(t.Context(), offboard.StreamQuota); err != nil {
		t.Fatal(err)
	}
	if _, err := Ensure(t.Context(), j.js, j.s); err != nil {
		t.Fatal(err)
	}
	c := j.start()
	if p, err := j.recordHeld(a); err == nil { // the tenant's first entry in the new stream
		p.CompleteNow()
	} else if !errors.Is(err, limiter.ErrJournalEntryGone) {
		t.Fatal(err)
	}
	time.Sleep(300 * time.Millisecond)
	j.clock.Advance(2 * time.Minute)
	pc, err := j.record(c) // under way
	if err != nil {
		t.Fatal(err)
	}
	defer pc.CompleteNow()
	time.Sleep(300 * time.Millisecond)
	j.clock.Advance(time.Second)
	pa, err := j.recordHeld(a)
	if err == nil {
		pa.CompleteNow()
		t.Fatal("two calls under way in a window of one: the process never read the other's entry")
	}
	return err
}
