package limiter

import (
	"testing"
	"time"

	"github.com/jonboulle/clockwork"
)

// offClock reads a shared fake clock off by skew.
type offClock struct {
	*clockwork.FakeClock
	skew time.Duration
}

func (c offClock) Now() time.Time                  { return c.FakeClock.Now().Add(c.skew) }
func (c offClock) Since(t time.Time) time.Duration { return c.Now().Sub(t) }
func (c offClock) Until(t time.Time) time.Duration { return t.Sub(c.Now()) }

// skewedProcess is a process over journal j whose clock reads clock off
// by skew, taking a tenant with windows ws.
func skewedProcess(t *testing.T, j *memJournal, clock *clockwork.FakeClock, skew, lease time.Duration, ws []Window) (*Shared, *Limiter) {
	t.Helper()
	c := offClock{clock, skew}
	return j.processWith(t, SharedOptions{Clock: c, Wall: c, Margin: 500 * time.Millisecond, Lease: lease, EndsLinger: time.Hour}, ws)
}

// TestOpposedClocksKeepTheWindow: one process ahead of the NATS server,
// another as far behind. Both may call only while they disagree by no
// more than the margin, so that one's call is never counted as over
// while the API still counts it: each must be within half the margin of
// the server. Before, each was let call within the whole margin: at
// ±450 ms (margin 500 ms) both called, and the second call came 9.6 s
// after the first, in a 10 s window that allows one.
func TestOpposedClocksKeepTheWindow(t *testing.T) {
	for _, skew := range []time.Duration{200 * time.Millisecond, 450 * time.Millisecond} {
		t.Run(skew.String(), func(t *testing.T) {
			clock := clockwork.NewFakeClockAt(epoch)
			j := &memJournal{last: map[string]uint64{}}
			ws := []Window{{Count: 1, Length: 10 * time.Second}}
			a, la := skewedProcess(t, j, clock, +skew, 5*time.Second, ws)
			b, lb := skewedProcess(t, j, clock, -skew, 5*time.Second, ws)
			// Each measures its clock on its own entry (no latency: the
			// server's time is the real one).
			for _, s := range []*Shared{a, b} {
				s.ObserveStamp(Event{Writer: s.Writer(), Written: s.opts.Wall.Now().UnixNano()}, clock.Now())
			}
			if a.Healthy() != nil || b.Healthy() != nil {
				if skew <= 250*time.Millisecond {
					t.Fatalf("within half the margin: %v, %v", a.Healthy(), b.Healthy())
				}
				return // they disagree by more than the margin: no call starts
			}
			if skew > 250*time.Millisecond {
				t.Fatalf("offsets %v and %v, 2 × %v apart, with a margin of 500ms: both may call", a.ClockOffset(), b.ClockOffset(), skew)
			}
			call(t, lb).CompleteNow()
			flush(t, b)
			answered := clock.Now()
			for clock.Since(answered) < ws[0].Length {
				if p, _ := la.TryAcquire(la.tenant.clock.Now()); p != nil {
					t.Fatalf("a second call %v (real time) after the first was answered, in a %v window that allows one", clock.Since(answered), ws[0].Length)
				}
				clock.Advance(50 * time.Millisecond)
			}
		})
	}
}

// TestAnotherProcessLeaseIsKept: a process with a longer call lease than
// this one's (its --call-timeout raised in a rolling update) enters a call
// and dies. Its call may reach the API until its own due time; this one
// counts it until then. Before, it was counted as ended at this process's
// own lease: the next call came 15.5 s after the dead one's could have.
func TestAnotherProcessLeaseIsKept(t *testing.T) {
	clock := clockwork.NewFakeClockAt(epoch)
	j := &memJournal{last: map[string]uint64{}}
	ws := []Window{{Count: 1, Length: time.Minute}}
	_, la := skewedProcess(t, j, clock, 0, 45*time.Second, ws)
	_, lb := skewedProcess(t, j, clock, 0, 90*time.Second, ws)
	pb := call(t, lb) // never ends: b dies; its call may be answered until +90s
	if !pb.due.Equal(epoch.Add(90 * time.Second)) {
		t.Fatalf("due at +%v, want +90s", pb.due.Sub(epoch))
	}
	// Counted until +90.5s (due and margin), it leaves the minute at +150.5s.
	for clock.Since(epoch) < 150*time.Second {
		if p, _ := la.TryAcquire(clock.Now()); p != nil {
			t.Fatalf("a call at +%v; the dead process's call may count until +90s, so none before +150.5s", clock.Since(epoch))
		}
		clock.Advance(500 * time.Millisecond)
	}
}
