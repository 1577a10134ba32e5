package queue

import (
	"errors"
	"testing"
	"time"

	"github.com/jonboulle/clockwork"

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
	js, s := contosoQueue(t)
	clock := clockwork.NewFakeClockAt(time.Date(2026, 11, 24, 0, 0, 0, 0, time.UTC))
	ws := []limiter.Window{{Count: 1, Length: time.Minute}}
	start := func() *limiter.Limiter {
		var l *limiter.Limiter
		followedTenant(t, js, s, clock, func(tn *limiter.Tenant) { l = tn.Add("offboard", ws) })
		return l
	}
	record := func(l *limiter.Limiter) (*limiter.Permit, error) {
		p, _ := l.TryAcquire(clock.Now())
		if p == nil {
			return nil, errors.New("no permit")
		}
		ctx, cancel := clockwork.WithTimeout(t.Context(), clockwork.NewRealClock(), 5*time.Second)
		defer cancel()
		if _, err := p.Record(ctx); err != nil {
			p.Release()
			return nil, err
		}
		return p, nil
	}
	other, err := NewQuotaJournal(t.Context(), js, s.Subjects)
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
	a := start() // its feed begins past 20
	p, err := record(a)
	if err != nil {
		t.Fatal(err)
	}
	p.CompleteNow()
	clock.Advance(2 * time.Minute)
	time.Sleep(300 * time.Millisecond) // the end written and read
	if err := js.DeleteStream(t.Context(), offboard.StreamQuota); err != nil {
		t.Fatal(err)
	}
	if _, err := Ensure(t.Context(), js, s); err != nil {
		t.Fatal(err)
	}
	c := start()
	if p, err := record(a); err == nil { // the tenant's first entry in the new stream
		p.CompleteNow()
	} else if !errors.Is(err, limiter.ErrJournalEntryGone) {
		t.Fatal(err)
	}
	time.Sleep(300 * time.Millisecond)
	clock.Advance(2 * time.Minute)
	pc, err := record(c) // under way
	if err != nil {
		t.Fatal(err)
	}
	defer pc.CompleteNow()
	time.Sleep(300 * time.Millisecond)
	clock.Advance(time.Second)
	if pa, err := record(a); err == nil {
		pa.CompleteNow()
		t.Fatal("two calls under way in a window of one: the process never read the other's entry")
	} else if !errors.Is(err, limiter.ErrJournalEntryGone) {
		t.Fatalf("a's call: %v, want ErrJournalEntryGone", err)
	}
}
