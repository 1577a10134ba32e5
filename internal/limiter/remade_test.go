package limiter

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/jonboulle/clockwork"
)

// TestJournalFoundRemadeIsUnhealthy: once a look after a cut of the feed
// finds the journal deleted or made anew, no call goes out from the
// process until it restarts, and Healthy (/readyz) says so. It said
// healthy once the hold ended, while every write failed.
func TestJournalFoundRemadeIsUnhealthy(t *testing.T) {
	t.Parallel()
	clock := clockwork.NewFakeClockAt(epoch)
	j := &memJournal{last: map[string]uint64{}}
	s, _ := j.process(t, clock, 500*time.Millisecond, time.Second, []Window{{Count: 5, Length: time.Second}})
	s.Hold()
	if err := s.Healthy(); err == nil {
		t.Error("healthy while held")
	}
	s.Resume(s.Holds(), nil)
	if err := s.Healthy(); err != nil {
		t.Fatalf("the journal found the same: %v", err)
	}
	s.Hold()
	s.Resume(s.Holds(), errors.New("stream MDE_OFFBOARD_QUOTA was deleted"))
	if err := s.Healthy(); err == nil || !strings.Contains(err.Error(), "restart the worker") {
		t.Errorf("the journal found deleted: Healthy %v, want it to say restart the worker", err)
	}
}
