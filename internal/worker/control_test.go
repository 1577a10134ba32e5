package worker

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/contoso-secops/mde-offboard/offboard"
)

// switchboard is a control plane whose pauses a test sets.
type switchboard struct {
	mu      sync.Mutex
	paused  map[string]bool // tenant/priority
	changed chan struct{}
	reads   int // of Changed
}

func newSwitchboard() *switchboard {
	return &switchboard{paused: map[string]bool{}, changed: make(chan struct{})}
}

func (s *switchboard) Paused(tenant string, p offboard.Priority) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.paused[tenant+"/"+string(p)]
}

func (s *switchboard) Budget(string) (string, bool) { return "", false }

func (s *switchboard) Changed() <-chan struct{} {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.reads++
	return s.changed
}

func (s *switchboard) readsSoFar() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.reads
}

func (s *switchboard) pause(tenant string, p offboard.Priority) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.paused[tenant+"/"+string(p)] = true
	close(s.changed)
	s.changed = make(chan struct{})
}

// TestUntilPausedEndsOnlyTheWaitsAPauseConcerns: the waits of many
// tenants share one watch of the controls; a pause ends the wait of its
// tenant alone, also when it landed between reading the priorities served
// and starting the wait.
func TestUntilPausedEndsOnlyTheWaitsAPauseConcerns(t *testing.T) {
	t.Parallel()
	board := newSwitchboard()
	w := &Worker{opts: Options{Control: board}}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan struct{})
	go func() { defer close(done); w.runPauses(ctx) }()
	defer func() { cancel(); <-done }()

	waits := map[string]context.Context{}
	for _, tenant := range []string{"contoso", "fabrikam", "northwind"} {
		prios, changed, err := w.served(t.Context(), tenant, nil)
		if err != nil {
			t.Fatal(err)
		}
		if tenant == "northwind" {
			// The pause lands after the priorities were read, and the
			// shared watch has looked at it before this wait starts.
			reads := board.readsSoFar()
			board.pause("northwind", offboard.Normal)
			waitFor(t, "the shared watch looks at northwind's pause", func() bool { return board.readsSoFar() != reads })
			time.Sleep(20 * time.Millisecond)
		}
		wctx, stop := w.untilPaused(t.Context(), tenant, prios, changed)
		defer stop()
		waits[tenant] = wctx
	}
	select {
	case <-waits["northwind"].Done():
	case <-time.After(10 * time.Second):
		t.Fatal("a pause landed before the wait started: the wait goes on")
	}

	board.pause("fabrikam", offboard.Bulk)
	select {
	case <-waits["fabrikam"].Done():
	case <-time.After(10 * time.Second):
		t.Fatal("fabrikam's bulk paused: its wait for both priorities goes on")
	}
	board.pause("fabrikam", offboard.Bulk) // a change, but no new pause for contoso
	time.Sleep(50 * time.Millisecond)
	if err := waits["contoso"].Err(); err != nil {
		t.Errorf("contoso's wait ended on other tenants' pauses: %v", err)
	}
	if n := len(w.pauses.all()); n != 3 {
		t.Errorf("%d waits watched, want 3 until they stop", n)
	}
}
