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
