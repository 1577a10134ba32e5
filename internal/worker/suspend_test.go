package worker

import (
	"testing"
	"time"
	"unsafe"

	"github.com/jonboulle/clockwork"
)

// suspendedClock is a clock whose Now is a fixed time read from the
// machine's clock, with the monotonic reading it would have after a
// suspend: the wall clock moved on by suspended, the monotonic clock by
// ran only (it stands still while the machine sleeps).
type suspendedClock struct {
	clockwork.Clock
	now time.Time
}

func (c suspendedClock) Now() time.Time { return c.now }

func (c suspendedClock) Since(t time.Time) time.Duration { return c.now.Sub(t) }

// afterSuspend is t (which must carry a monotonic reading) as read after
// the machine ran for ran and slept for suspended.
func afterSuspend(t time.Time, ran, suspended time.Duration) time.Time {
	later := t.Add(ran + suspended)
	// time.Time is {wall uint64; ext int64; loc *Location}; with a
	// monotonic reading, ext holds it in nanoseconds.
	parts := (*struct {
		wall uint64
		ext  int64
		loc  *time.Location
	})(unsafe.Pointer(&later))
	parts.ext -= int64(suspended)
	return later
}

// TestGuardReadAgedBySuspend: a device read right before the machine
// slept (a paused VM, a stopped container) is as old as the wall clock
// says when the call would go out, though the monotonic clock counted
// none of the sleep: the guards judge the device as it is now.
func TestGuardReadAgedBySuspend(t *testing.T) {
	read := time.Now()
	now := afterSuspend(read, 100*time.Millisecond, time.Hour)
	if got := now.Sub(read); got != 100*time.Millisecond {
		t.Fatalf("the crafted time is %v after the read by the monotonic clock, want 100ms", got)
	}
	clock := suspendedClock{Clock: clockwork.NewFakeClock(), now: now}
	if !guardReadStale(clock, read) {
		t.Error("a read an hour old by the wall clock, 100ms by the monotonic one, is taken as fresh")
	}
	if guardReadStale(suspendedClock{Clock: clock.Clock, now: read.Add(100 * time.Millisecond)}, read) {
		t.Error("a read 100ms old by both clocks is taken as stale")
	}
}
