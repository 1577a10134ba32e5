// Package steptest fakes a step of the system clock (an NTP step, a
// hypervisor's time sync) for tests: times whose wall clock reading moved
// while their monotonic reading did not, which the time package offers no
// way to build.
package steptest

import (
	"sync/atomic"
	"testing"
	"time"
	"unsafe"

	"github.com/jonboulle/clockwork"
)

// Wall returns at with its wall clock reading moved by d and its monotonic
// reading unchanged: what the clock reads after the system's clock was
// stepped by d. Check tells whether it works with this Go.
func Wall(at time.Time, d time.Duration) time.Time {
	u := at.Add(d)
	type layout struct { // time.Time's fields
		wall uint64
		ext  int64 // the monotonic reading, when wall says there is one
		loc  *time.Location
	}
	(*layout)(unsafe.Pointer(&u)).ext -= int64(d) //nolint:gosec // the point: time.Time offers no way to move one reading alone
	return u
}

// Check fails t if Wall does not move the wall clock reading alone.
func Check(t testing.TB) {
	t.Helper()
	at, d := time.Now(), 2*time.Minute
	if u := Wall(at, d); u.Sub(at) != 0 || u.Round(0).Sub(at.Round(0)) != d {
		t.Fatalf("steptest.Wall: monotonic moved %v, wall %v; want 0 and %v", u.Sub(at), u.Round(0).Sub(at.Round(0)), d)
	}
}

// Clock is the real clock with its wall clock reading moved by the steps
// made so far.
type Clock struct {
	clockwork.Clock
	off atomic.Int64
}

// NewClock returns a real clock not stepped yet.
func NewClock(t testing.TB) *Clock {
	t.Helper()
	Check(t)
	return &Clock{Clock: clockwork.NewRealClock()}
}

// Step moves the clock's wall clock reading by d.
func (c *Clock) Step(d time.Duration) { c.off.Add(int64(d)) }

// Now is the time with the steps made so far.
func (c *Clock) Now() time.Time { return Wall(time.Now(), time.Duration(c.off.Load())) }

// Since is Now().Sub(t).
func (c *Clock) Since(t time.Time) time.Duration { return c.Now().Sub(t) }

// Until is t.Sub(Now()).
func (c *Clock) Until(t time.Time) time.Duration { return t.Sub(c.Now()) }
