package testwait

import (
	"testing"
	"time"

	"github.com/jonboulle/clockwork"
)

// recorder is a testing.TB that records a failure instead of ending the
// goroutine's test, so that a bound's failure can be looked at.
type recorder struct {
	testing.TB
	failed string
}

func (r *recorder) Helper() {}

func (r *recorder) Fatalf(format string, args ...any) {
	r.failed = format
}

// TestForReturnsWhatComesAndFailsAfterItsBound: a value sent in time is
// returned; nothing sent fails the test after the bound, not before.
func TestForReturnsWhatComesAndFailsAfterItsBound(t *testing.T) {
	ch := make(chan int, 1)
	ch <- 7
	if v := For(t, ch, time.Second, "seven"); v != 7 {
		t.Fatalf("For returned %d, want 7", v)
	}
	r := &recorder{TB: t}
	start := time.Now()
	if v := For(r, ch, 50*time.Millisecond, "nothing"); v != 0 || r.failed == "" {
		t.Fatalf("For over an empty channel: %d, failed %q; want 0 and a failure", v, r.failed)
	}
	if took := time.Since(start); took < 50*time.Millisecond {
		t.Fatalf("For failed after %v, before its bound", took)
	}
}

// TestWaitersReturnsOnceTheyWait: Waiters returns when the goroutines wait
// on the clock.
func TestWaitersReturnsOnceTheyWait(t *testing.T) {
	clock := clockwork.NewFakeClock()
	go clock.Sleep(time.Hour)
	Waiters(t, clock, 1)
	clock.Advance(time.Hour)
}
