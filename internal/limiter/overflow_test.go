package limiter

import (
	"testing"
	"time"

	"github.com/jonboulle/clockwork"
)

// longest are windows as long as a Duration goes, which the worker
// accepts with as long a --quota-history.
var longest = []time.Duration{2562047 * time.Hour, 1<<63 - 1}

// TestLongestWindowKeepsTheOthersCalls: a window of one call as long as a
// Duration goes holds that call for good. Another replica's call, and its
// 429's pause, must count in it as this process's do. Their caps (now
// plus the longest window and the margin) overflowed: the end counted
// from before 1970 and left the window at once, and the pause was cut to
// nothing.
func TestLongestWindowKeepsTheOthersCalls(t *testing.T) {
	const margin = 500 * time.Millisecond
	for _, length := range longest {
		t.Run(length.String(), func(t *testing.T) {
			clock := clockwork.NewFakeClockAt(epoch)
			j := &memJournal{last: map[string]uint64{}}
			ws := []Window{{Count: 1, Length: length}}
			a, la := j.process(t, clock, margin, 10*time.Second, ws)
			_, lb := j.process(t, clock, margin, 10*time.Second, ws)
			call(t, la).CompleteNow()
			la.tenant.Pause(clock.Now(), 10*time.Second)
			flush(t, a)
			if until, want := lb.tenant.PausedUntil(), clock.Now().Add(10*time.Second); until.Before(want) {
				t.Errorf("B paused until %v, want at least %v", until, want)
			}
			clock.Advance(time.Minute)
			if p, wait := lb.TryAcquire(clock.Now()); p != nil {
				p.Release()
				t.Errorf("B got a permit (wait %v) where A's call fills the window", wait)
			}
			if got := lb.Remaining(clock.Now()); got[0] != 0 {
				t.Errorf("B: %d free, want 0", got[0])
			}
		})
	}
}

// TestLongestWindowKeepsAnEndDatedAhead: an end another replica dated ten
// years ahead (its clock far off) holds the place of a window as long as
// a Duration goes. The wait for it, the window's length past an end in
// the future, overflowed to a time past: the place looked free.
func TestLongestWindowKeepsAnEndDatedAhead(t *testing.T) {
	for _, length := range longest {
		t.Run(length.String(), func(t *testing.T) {
			clock := clockwork.NewFakeClockAt(epoch)
			j := &memJournal{last: map[string]uint64{}}
			_, l := j.process(t, clock, 100*time.Millisecond, 10*time.Second, []Window{{Count: 1, Length: length}})
			ahead := clock.Now().AddDate(10, 0, 0).UnixNano()
			if _, err := j.Append(t.Context(), "contoso", Event{Writer: "ahead", Done: []Call{{API: "offboard", ID: 1, At: ahead}}}, 0); err != nil {
				t.Fatal(err)
			}
			if p, wait := l.TryAcquire(clock.Now()); p != nil || wait < length {
				t.Fatalf("permit %v, wait %v; want none for at least %v", p != nil, wait, length)
			}
		})
	}
}

// TestEndAtTheLatestTimeStaysInOrder: with a window near the longest
// Duration, an end dated as far ahead as a time goes is capped at the
// latest Unix time an int64 holds. The other replicas' ends are kept in
// order; that one went first (its successor wrapped round), behind an
// end of now, and the wait was for that end alone.
func TestEndAtTheLatestTimeStaysInOrder(t *testing.T) {
	clock := clockwork.NewFakeClockAt(epoch)
	j := &memJournal{last: map[string]uint64{}}
	length := longest[0]
	_, l := j.process(t, clock, 100*time.Millisecond, 10*time.Second, []Window{{Count: 1, Length: length}})
	for i, at := range []int64{clock.Now().UnixNano(), 1<<63 - 1} {
		ev := Event{Writer: "other", Done: []Call{{API: "offboard", ID: uint64(i + 1), At: at}}}
		if _, err := j.Append(t.Context(), "contoso", ev, uint64(i)); err != nil {
			t.Fatal(err)
		}
	}
	if p, wait := l.TryAcquire(clock.Now()); p != nil || wait < length+time.Minute {
		t.Fatalf("permit %v, wait %v; want none for longer than the window past now", p != nil, wait)
	}
}
