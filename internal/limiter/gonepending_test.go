package limiter

import (
	"errors"
	"testing"
	"time"

	"github.com/jonboulle/clockwork"
)

// TestGoneTenantGathersNoEndsOfCallsNeverEntered: once a tenant's journal
// is found made anew under a running process, its writes are refused
// before they reach the journal, until the process restarts (requests come
// back every few seconds meanwhile). An entry refused so holds no call:
// nothing is kept to be written for it. Before, each refused entry left
// the ends of its calls pending, written never, so a tenant left so for
// a day gathered one for every time one of its requests came back.
func TestGoneTenantGathersNoEndsOfCallsNeverEntered(t *testing.T) {
	clock := clockwork.NewFakeClockAt(epoch)
	j := &memJournal{last: map[string]uint64{}}
	ws := []Window{{Count: 100, Length: time.Minute}}
	a, la := j.processWith(t, SharedOptions{Clock: clock, Lease: 10 * time.Second}, ws)
	call(t, la).CompleteNow()
	flush(t, a)               // entries 1 and 2: a's feed has read up to 2
	j.loseTo(0, "contoso", 0) // made anew: a's next entry is numbered 1
	tn := a.Tenant("contoso")
	record := func() {
		t.Helper()
		p, _ := la.TryAcquire(clock.Now())
		if p == nil {
			t.Fatal("no permit")
		}
		defer p.Release()
		if _, err := p.Record(t.Context()); !errors.Is(err, ErrJournalEntryGone) {
			t.Fatalf("record: %v, want ErrJournalEntryGone", err)
		}
	}
	pending := func() int {
		tn.wmu.Lock() // no write has taken what is pending
		defer tn.wmu.Unlock()
		tn.mu.Lock()
		defer tn.mu.Unlock()
		return len(tn.pending.Done)
	}
	record() // stored as 1, below a's feed: its call's end (never sent) is pending
	before := pending()
	const refused = 500
	for range refused {
		record()
	}
	if after := pending(); after > before {
		t.Fatalf("%d call ends pending after %d entries refused before the journal, %d before them: want no more", after, refused, before)
	}
}
