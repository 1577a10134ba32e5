package queue

import (
	"errors"
	"testing"
	"time"

	"github.com/contoso-secops/mde-offboard/internal/limiter"
	"github.com/contoso-secops/mde-offboard/offboard"
)

// TestJournalMadeAnewUpToTheSameLastEntry: the quota stream is deleted
// and made anew under a running process, and another process's entries
// there bring the tenant's last entry to the very number of the last
// one the running process saw in the old stream. Its feed, which read
// past that number, never brings them. Its next entry, which expects to
// follow that number, must not go in as if it had read them: the
// other's call is in a window of one. Before, the journal took the entry
// (its last matched) and both called within the minute.
func TestJournalMadeAnewUpToTheSameLastEntry(t *testing.T) {
	j := newOneCallJournal(t)
	a := j.start() // probe 1
	p, err := j.record(a)
	if err != nil {
		t.Fatal(err)
	}
	p.CompleteNow()                    // entries 2 (the call) and 3 (its end)
	time.Sleep(300 * time.Millisecond) // the end written and read
	j.clock.Advance(2 * time.Minute)
	if err := j.js.DeleteStream(t.Context(), offboard.StreamQuota); err != nil {
		t.Fatal(err)
	}
	if _, err := Ensure(t.Context(), j.js, j.s); err != nil {
		t.Fatal(err)
	}
	c := j.start() // probe 1 of the new stream
	pc, err := j.record(c)
	if err != nil {
		t.Fatal(err)
	}
	pc.CompleteNow()                   // entries 2 and 3: the tenant's last is 3 again
	time.Sleep(300 * time.Millisecond) // the end written
	st, err := j.js.Stream(t.Context(), offboard.StreamQuota)
	if err != nil {
		t.Fatal(err)
	}
	last, err := st.GetLastMsgForSubject(t.Context(), j.s.Subjects.Quota("contoso"))
	if err != nil {
		t.Fatal(err)
	}
	if last.Sequence != 3 {
		t.Fatalf("the tenant's last entry in the new stream is %d, want 3 (the test's premise)", last.Sequence)
	}
	j.clock.Advance(time.Second)
	// a's calls wait while it looks at the stream, then fail for good.
	pa, err := j.recordHeld(a)
	if err == nil {
		pa.CompleteNow()
		t.Fatal("two calls within a second in a window of one a minute: a never read the other's call")
	}
	if !errors.Is(err, limiter.ErrJournalEntryGone) {
		t.Fatalf("a's call: %v, want ErrJournalEntryGone", err)
	}
}
