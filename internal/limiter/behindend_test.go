package limiter

import (
	"testing"
	"time"

	"github.com/jonboulle/clockwork"
)

// TestEndWrittenAfterTheClockIsFoundBehind: b's clock is 3 s behind the
// server's, and no step showed it (a virtual machine paused and resumed
// moves its wall and monotonic clocks alike): b's call goes out before
// its own entry measures the clock. Found behind, b makes no more call,
// but the one under way is answered a second later, and its end is
// written by that clock. Read as it was written, the end came 3 s before
// the server counted the call, and a called 7.5 s after it in a 10 s
// window that allows one. Written later by as much as the clock is found
// behind, as a pause is, the window holds.
func TestEndWrittenAfterTheClockIsFoundBehind(t *testing.T) {
	clock := clockwork.NewFakeClockAt(epoch)
	j := &memJournal{last: map[string]uint64{}}
	ws := []Window{{Count: 1, Length: 10 * time.Second}}
	_, la := skewedProcess(t, j, clock, 0, 5*time.Second, ws)
	b, lb := skewedProcess(t, j, clock, -3*time.Second, 5*time.Second, ws)
	p := call(t, lb) // the clock not measured yet: b may call
	// b's entry comes back stamped by the server: the clock is found behind.
	b.ObserveStamp(Event{Writer: b.Writer(), Written: b.opts.Wall.Now().UnixNano()}, clock.Now())
	if b.Healthy() == nil {
		t.Fatalf("b's clock measured %v off: it may still call", b.ClockOffset())
	}
	clock.Advance(time.Second)
	p.CompleteNow()
	flush(t, b)
	answered := clock.Now()
	for clock.Since(answered) < ws[0].Length {
		if q, _ := la.TryAcquire(clock.Now()); q != nil {
			t.Fatalf("a called %v after b's call was answered, in a %v window that allows one", clock.Since(answered), ws[0].Length)
		}
		clock.Advance(100 * time.Millisecond)
	}
}

// TestDueWrittenPastAClockFoundBehind: b runs with a wider margin than a
// (--quota-margin raised in a rolling update), and its clock, 1.9 s
// behind the server's, is within half of b's: b calls, and dies with its
// call under way. Its due time, read as written, came 1.9 s before the
// call could be answered by, and a called 8.6 s after that due time in a
// 10 s window that allows one. Written later by as much as the clock is
// found behind, the due time holds the window.
func TestDueWrittenPastAClockFoundBehind(t *testing.T) {
	clock := clockwork.NewFakeClockAt(epoch)
	j := &memJournal{last: map[string]uint64{}}
	ws := []Window{{Count: 1, Length: 10 * time.Second}}
	_, la := skewedProcess(t, j, clock, 0, 5*time.Second, ws)
	c := offClock{clock, -1900 * time.Millisecond}
	b, lb := j.processWith(t, SharedOptions{Clock: c, Wall: c, Margin: 4 * time.Second, Lease: 5 * time.Second, EndsLinger: time.Hour}, ws)
	b.ObserveStamp(Event{Writer: b.Writer(), Written: c.Now().UnixNano()}, clock.Now())
	if err := b.Healthy(); err != nil {
		t.Fatalf("b's clock %v off, within half its margin: %v", b.ClockOffset(), err)
	}
	// Never ended: b dies. It may be answered until its due time, by
	// the server's clock 1.9 s after b's.
	p := call(t, lb)
	due := p.Due().Add(1900 * time.Millisecond)
	for clock.Now().Before(due.Add(ws[0].Length)) {
		if q, _ := la.TryAcquire(clock.Now()); q != nil {
			t.Fatalf("a called %v after b's call was due, in a %v window that allows one", clock.Now().Sub(due), ws[0].Length)
		}
		clock.Advance(100 * time.Millisecond)
	}
}
