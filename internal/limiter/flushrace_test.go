package limiter

import (
	"context"
	"testing"
	"time"
)

// TestPauseLeftByAFailedFlushIsWritten: a 429's pause is pending while no
// writer runs (the background writer ended in the instant Flush took the
// pause to write it), and the Flush fails. The pause, put back, is
// written by a writer started then, without waiting for the tenant's next
// call. Before, it stayed pending, unknown to the other replicas, until
// something else woke the writer.
func TestPauseLeftByAFailedFlushIsWritten(t *testing.T) {
	t.Parallel()
	j := &failOnce{entryLog: &entryLog{memJournal: memJournal{last: map[string]uint64{}}, added: make(chan struct{}, 100)}}
	s := NewShared(SharedOptions{Journal: j, Lease: 10 * time.Second})
	t.Cleanup(func() { s.Close(context.Background()) })
	tn := s.Tenant("contoso")
	tn.Add("offboard", []Window{{Count: 2, Length: time.Minute}})
	s.MarkCaughtUp(0)
	until := time.Now().Add(time.Minute).UnixNano()
	tn.mu.Lock()
	if tn.writing {
		tn.mu.Unlock()
		t.Fatal("a writer runs with nothing pending")
	}
	tn.pending.Paused = until // as Pause leaves it, its writer gone
	tn.mu.Unlock()
	if err := tn.Flush(t.Context()); err == nil {
		t.Fatal("Flush succeeded over a failing journal")
	}
	select {
	case <-j.added:
	case <-time.After(5 * time.Second):
		t.Fatal("the pause put back by the failed Flush not written within 5s")
	}
	j.mu.Lock()
	defer j.mu.Unlock()
	if len(j.entries) != 1 || j.entries[0].Paused != until {
		t.Errorf("entries %+v, want one with the pause until %d", j.entries, until)
	}
}
