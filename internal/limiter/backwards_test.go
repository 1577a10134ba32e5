package limiter

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/jonboulle/clockwork"
)

// TestJournalNumberedAgainStopsCalls: the journal loses its last entry
// and numbers the next one again. A process that read past that number
// cannot see entries written under it (its feed goes on from where it
// was), so it makes no call rather than one the others' entries would
// have forbidden. Before, it took the journal's word, wrote under the
// reused number, and two calls went into a window that allows one.
func TestJournalNumberedAgainStopsCalls(t *testing.T) {
	clock := clockwork.NewFakeClockAt(epoch)
	j := &memJournal{last: map[string]uint64{}}
	ws := []Window{{Count: 1, Length: time.Minute}}
	opts := SharedOptions{Clock: clock, Margin: 100 * time.Millisecond, Lease: 10 * time.Second}
	a, la := j.processWith(t, opts, ws)
	_, lb := j.processWith(t, opts, ws)
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
	j := &memJournal{last: map[string]uint64{}}
	ws := []Window{{Count: 1, Length: time.Minute}}
	opts := SharedOptions{Clock: clock, Margin: 100 * time.Millisecond, Lease: 10 * time.Second}
	a, la := j.processWith(t, opts, ws)
	call(t, la).CompleteNow()
	flush(t, a) // entries 1 and 2: a has read up to 2
	clock.Advance(2 * time.Minute)
	j.loseTo(0, "contoso", 0) // made anew
	_, lc := j.processWith(t, opts, ws)
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

// raceJournal is a process's view of a memJournal whose conflict answer
// is overtaken once: before the answer reaches the process, meanwhile
// runs (another replica writes, and the feed brings its entry).
type raceJournal struct {
	*memJournal
	meanwhile func()
}

func (j *raceJournal) Append(ctx context.Context, tenant string, ev Event, last uint64) (uint64, error) {
	seq, err := j.memJournal.Append(ctx, tenant, ev, last)
	if f := j.meanwhile; err != nil && f != nil {
		j.meanwhile = nil
		f()
	}
	return seq, err
}

// TestConflictOvertakenByTheFeedIsNoLostEntry: another replica's entries
// keep coming while this process follows a conflict, and its feed brings
// one more before the conflict's answer (the journal's last entry as it
// was a moment ago) is looked at. The journal lost nothing: the call is
// entered after that entry. Before, the answer, older than the entry the
// feed had brought, read as the tenant's last entry gone, and the call
// failed with "restart the worker".
func TestConflictOvertakenByTheFeedIsNoLostEntry(t *testing.T) {
	clock := clockwork.NewFakeClockAt(epoch)
	j := &memJournal{last: map[string]uint64{}}
	ws := []Window{{Count: 10, Length: time.Minute}}
	opts := SharedOptions{Clock: clock, Margin: 100 * time.Millisecond, Lease: 10 * time.Second}
	_, lb := j.processWith(t, opts, ws)
	rj := &raceJournal{memJournal: j}
	_, la := j.processThrough(t, rj, opts, ws)

	j.hold = true
	call(t, lb).Release() // entry 1, not read by a yet
	rj.meanwhile = func() {
		j.release()
		call(t, lb).Release() // entry 2, read by a before it sees the conflict
	}
	pa, _ := la.TryAcquire(clock.Now())
	if pa == nil {
		t.Fatal("no permit for a")
	}
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	if _, err := pa.Record(ctx); err != nil {
		t.Fatalf("a's call after another replica's entries: %v", err)
	}
	// Read before the release, under the tenant's lock: the release
	// wakes the writer, whose entry of the call's end moves it on.
	la.tenant.mu.Lock()
	got := la.tenant.lastSeq
	la.tenant.mu.Unlock()
	pa.Release()
	if want := uint64(3); got != want {
		t.Errorf("a's last entry %d, want %d (its own after b's two)", got, want)
	}
}
