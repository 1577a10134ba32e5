package limiter

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/jonboulle/clockwork"
)

// lossyJournal is a journal that can lose its last entries and number
// entries again from below (a store lost or restored). Its readers follow
// it as an ordered consumer does: from after the last entry they read.
type lossyJournal struct {
	mu      sync.Mutex
	seq     uint64
	last    map[string]uint64
	readers []*Shared
	cursor  map[*Shared]uint64
}

func (j *lossyJournal) Append(_ context.Context, tenant string, ev Event, last uint64) (uint64, error) {
	j.mu.Lock()
	if j.last[tenant] != last {
		defer j.mu.Unlock()
		return 0, &ConflictError{Last: j.last[tenant]}
	}
	j.seq++
	seq := j.seq
	j.last[tenant] = seq
	var to []*Shared
	for _, r := range j.readers {
		if seq > j.cursor[r] {
			j.cursor[r] = seq
			to = append(to, r)
		}
	}
	j.mu.Unlock()
	for _, r := range to {
		r.Deliver(seq, tenant, ev)
	}
	return seq, nil
}

// loseTo forgets the entries after seq; the tenant's last is then last.
func (j *lossyJournal) loseTo(seq uint64, tenant string, last uint64) {
	j.mu.Lock()
	defer j.mu.Unlock()
	j.seq, j.last[tenant] = seq, last
}

// TestJournalNumberedAgainStopsCalls: the journal loses its last entry
// and numbers the next one again. A process that read past that number
// cannot see entries written under it (its feed goes on from where it
// was), so it makes no call rather than one the others' entries would
// have forbidden. Before, it took the journal's word, wrote under the
// reused number, and two calls went into a window that allows one.
func TestJournalNumberedAgainStopsCalls(t *testing.T) {
	clock := clockwork.NewFakeClockAt(epoch)
	j := &lossyJournal{last: map[string]uint64{}, cursor: map[*Shared]uint64{}}
	ws := []Window{{Count: 1, Length: time.Minute}}
	process := func() (*Shared, *Limiter) {
		return newProcess(t, SharedOptions{Journal: j, Clock: clock, Margin: 100 * time.Millisecond, Lease: 10 * time.Second}, ws, func(s *Shared) {
			j.mu.Lock()
			j.readers = append(j.readers, s)
			j.mu.Unlock()
		})
	}
	a, la := process()
	_, lb := process()
	call(t, la).CompleteNow()
	flush(t, a) // entries 1 and 2
	clock.Advance(2 * time.Minute)
	j.loseTo(1, "contoso", 1) // entry 2 lost: the next is numbered 2 again
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Second)
	defer cancel()
	pb, _ := lb.TryAcquire(clock.Now())
	if pb == nil {
		t.Fatal("no permit for b")
	}
	_, err := pb.Record(ctx)
	if err == nil {
		clock.Advance(time.Second) // b's call under way
		if pa, _ := la.TryAcquire(clock.Now()); pa != nil {
			if _, err := pa.Record(ctx); err == nil {
				t.Fatal("two calls within a second in a window of one a minute: a never read b's entry")
			}
		}
		return
	}
	if !errors.Is(err, ErrJournalEntryGone) {
		t.Fatalf("b's call: %v, want ErrJournalEntryGone", err)
	}
	pb.Release()
}

// TestJournalMadeAnewStopsCalls: the journal is made anew, and other
// entries carry its numbers past the entry this process's feed had read
// before this process writes again. Its entry for the tenant is gone all
// the same, and it makes no call.
func TestJournalMadeAnewStopsCalls(t *testing.T) {
	clock := clockwork.NewFakeClockAt(epoch)
	j := &lossyJournal{last: map[string]uint64{}, cursor: map[*Shared]uint64{}}
	ws := []Window{{Count: 1, Length: time.Minute}}
	follow := func(s *Shared) {
		j.mu.Lock()
		j.readers = append(j.readers, s)
		j.mu.Unlock()
	}
	opts := SharedOptions{Journal: j, Clock: clock, Margin: 100 * time.Millisecond, Lease: 10 * time.Second}
	a, la := newProcess(t, opts, ws, follow)
	call(t, la).CompleteNow()
	flush(t, a) // entries 1 and 2: a has read up to 2
	clock.Advance(2 * time.Minute)
	j.loseTo(0, "contoso", 0) // made anew
	_, lc := newProcess(t, opts, ws, follow)
	pc := call(t, lc) // c's call is entry 1, which a's feed never brings
	defer pc.CompleteNow()
	for last := range uint64(2) { // probes 2 and 3: past a's feed
		if _, err := j.Append(t.Context(), "_clock", Event{Writer: "probe"}, last*2); err != nil {
			t.Fatal(err)
		}
	}
	clock.Advance(time.Second)
	pa, _ := la.TryAcquire(clock.Now())
	if pa == nil {
		t.Fatal("no permit for a")
	}
	defer pa.Release()
	if _, err := pa.Record(t.Context()); !errors.Is(err, ErrJournalEntryGone) {
		t.Fatalf("a's call: %v, want ErrJournalEntryGone; c's call is under way in a window of one", err)
	}
}
