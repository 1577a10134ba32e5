package limiter

import (
	"testing"
	"time"
	"unsafe"

	"github.com/jonboulle/clockwork"
)

// stepWall returns at with its wall clock reading moved by d and its
// monotonic reading unchanged: what the clock reads after the system's
// clock was stepped by d (an NTP step, a hypervisor's time sync). The time
// package offers no way to build one, so the monotonic reading is moved
// back by hand; the result is checked.
func stepWall(t *testing.T, at time.Time, d time.Duration) time.Time {
	t.Helper()
	u := at.Add(d)
	type layout struct { // time.Time's fields
		wall uint64
		ext  int64 // the monotonic reading, when wall says there is one
		loc  *time.Location
	}
	(*layout)(unsafe.Pointer(&u)).ext -= int64(d)
	if u.Sub(at) != 0 || u.Round(0).Sub(at.Round(0)) != d {
		t.Fatalf("stepWall: monotonic moved %v, wall %v; want 0 and %v", u.Sub(at), u.Round(0).Sub(at.Round(0)), d)
	}
	return u
}

// TestOwnCallsOutlastAWallClockStep: 100 calls end, and a second later the
// system clock is stepped two minutes forward. This process's calls are
// timed on the monotonic clock, which the step does not move: the minute
// is still full, and frees 59 s later. Timed on the wall clock, all 100
// places came free at once: 200 calls in one second against 100/1m.
func TestOwnCallsOutlastAWallClockStep(t *testing.T) {
	l := NewTenant(clockwork.NewRealClock()).Add("offboard", Default())
	t0 := time.Now()
	for range 100 {
		p, _ := l.TryAcquire(t0)
		if p == nil {
			t.Fatal("no permit for the first 100 calls")
		}
		p.Complete(t0)
	}
	later := stepWall(t, t0.Add(time.Second), 2*time.Minute)
	if p, wait := l.TryAcquire(later); p != nil || wait < 58*time.Second || wait > time.Minute {
		t.Fatalf("after the step: permit %v, wait %v; want none for 59s", p != nil, wait)
	}
	if got := l.Remaining(later); got[0] != 0 || got[1] != 1400 {
		t.Errorf("remaining after the step %v, want [0 1400]", got)
	}
	if p, _ := l.TryAcquire(stepWall(t, t0.Add(time.Minute+time.Second), 2*time.Minute)); p == nil {
		t.Error("no permit a real minute after the calls")
	}
}

// TestJournalCallsOutlastAWallClockStep: another replica's 100 calls come
// through the journal, and a second later this process's clock is stepped
// two minutes forward. Placed by the wall clock when they arrived, they
// age on the monotonic clock from then on: the minute stays full here
// too. Compared with the wall clock at each look, they left the window at
// the step.
func TestJournalCallsOutlastAWallClockStep(t *testing.T) {
	j := &memJournal{last: map[string]uint64{}}
	opts := SharedOptions{Clock: clockwork.NewRealClock(), Margin: 100 * time.Millisecond, Lease: 10 * time.Second}
	a, la := j.processWith(t, opts, Default())
	_, lb := j.processWith(t, opts, Default())
	for range 100 {
		call(t, la).CompleteNow()
	}
	flush(t, a)
	t0 := time.Now()
	if p, _ := lb.TryAcquire(t0); p != nil {
		t.Fatal("b got a permit with the other replica's 100 calls in the minute")
	}
	later := stepWall(t, t0.Add(time.Second), 2*time.Minute)
	if p, wait := lb.TryAcquire(later); p != nil || wait < 58*time.Second || wait > time.Minute {
		t.Fatalf("after the step: permit %v, wait %v; want none for about 59s", p != nil, wait)
	}
}

// TestJournalCallUnderWayOutlastsAWallClockStep: another replica's call
// under way counts until its answer is due (its lease), and a step of the
// clock does not bring that time closer: the window of one stays taken.
// Compared with the wall clock, the call was due at the step, counted
// from its due time two minutes back, and the window was free.
func TestJournalCallUnderWayOutlastsAWallClockStep(t *testing.T) {
	j := &memJournal{last: map[string]uint64{}}
	opts := SharedOptions{Clock: clockwork.NewRealClock(), Margin: 100 * time.Millisecond, Lease: 10 * time.Second}
	ws := []Window{{Count: 1, Length: time.Minute}}
	_, la := j.processWith(t, opts, ws)
	_, lb := j.processWith(t, opts, ws)
	defer call(t, la).Release() // a's call under way
	later := stepWall(t, time.Now().Add(time.Second), 2*time.Minute)
	if p, _ := lb.TryAcquire(later); p != nil {
		t.Fatal("b got a permit a second after a's call started: the step made it due")
	}
	if got := lb.Remaining(later); got[0] != 0 {
		t.Errorf("remaining after the step %v, want [0]: a's call is under way", got)
	}
}

// TestJournalPauseOutlastsAWallClockStep: another replica met a 429 and
// paused the tenant for 30 s; a step of this process's clock does not end
// the pause. Compared with the wall clock, it ended at the step, and the
// next call met the API's 429 again.
func TestJournalPauseOutlastsAWallClockStep(t *testing.T) {
	j := &memJournal{last: map[string]uint64{}}
	opts := SharedOptions{Clock: clockwork.NewRealClock(), Margin: 100 * time.Millisecond, Lease: 10 * time.Second}
	a, la := j.processWith(t, opts, Default())
	_, lb := j.processWith(t, opts, Default())
	la.tenant.Pause(time.Now(), 30*time.Second)
	flush(t, a)
	later := stepWall(t, time.Now().Add(time.Second), 2*time.Minute)
	if p, wait := lb.TryAcquire(later); p != nil || wait < 28*time.Second || wait > 30*time.Second {
		t.Fatalf("after the step: permit %v, wait %v; want none for about 29s", p != nil, wait)
	}
}
