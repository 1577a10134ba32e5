package limiter

import (
	"strings"
	"testing"
	"time"

	"github.com/jonboulle/clockwork"

	"github.com/contoso-secops/mde-offboard/internal/limiter/steptest"
)

// probe is a probe of s written now by its clock and stamped by the
// server's, which is never stepped.
func probe(s *Shared) {
	ev := Event{Writer: s.Writer()}
	ev.Written, ev.Gen = s.Stamp()
	s.ObserveStamp(ev, time.Now().Round(0)) // as NATS sends it: no monotonic reading
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
	steptest.Check(t)
	later := steptest.Wall(t0.Add(time.Second), 2*time.Minute)
	if p, wait := l.TryAcquire(later); p != nil || wait < 58*time.Second || wait > time.Minute {
		t.Fatalf("after the step: permit %v, wait %v; want none for 59s", p != nil, wait)
	}
	if got := l.Remaining(later); got[0] != 0 || got[1] != 1400 {
		t.Errorf("remaining after the step %v, want [0 1400]", got)
	}
	if p, _ := l.TryAcquire(steptest.Wall(t0.Add(time.Minute+time.Second), 2*time.Minute)); p == nil {
		t.Error("no permit a real minute after the calls")
	}
}

// TestWallClockStepStopsCallsUntilMeasured: another replica's 100 calls
// fill the minute; this process's clock is stepped two minutes forward.
// Compared with the stepped clock they would have left the window: no
// call starts, and a probe is asked for, until an entry written after the
// step measures the clock. Measured two minutes ahead, it is off; set
// right and measured again, the 100 calls fill the minute as before.
func TestWallClockStepStopsCallsUntilMeasured(t *testing.T) {
	j := &memJournal{last: map[string]uint64{}}
	ca, cb := steptest.NewClock(t), steptest.NewClock(t)
	opts := SharedOptions{Margin: 100 * time.Millisecond, Lease: 10 * time.Second}
	a, la := j.processWith(t, SharedOptions{Clock: ca, Margin: opts.Margin, Lease: opts.Lease}, Default())
	b, lb := j.processWith(t, SharedOptions{Clock: cb, Margin: opts.Margin, Lease: opts.Lease}, Default())
	probe(b)
	for range 100 {
		call(t, la).CompleteNow()
	}
	flush(t, a)
	cb.Step(2 * time.Minute)
	if p, _ := lb.TryAcquire(cb.Now()); p != nil {
		t.Fatal("b got a permit after its clock was stepped: the other replica's calls left the window")
	}
	if err := b.Healthy(); err == nil || !strings.Contains(err.Error(), "stepped by 2m0s") {
		t.Errorf("b.Healthy() = %v, want the step", err)
	}
	select {
	case <-b.ProbeNow():
	default:
		t.Error("no probe asked for after the step")
	}
	probe(b) // measured: two minutes ahead
	if p, _ := lb.TryAcquire(cb.Now()); p != nil {
		t.Fatal("b got a permit with its clock two minutes ahead")
	}
	if err := b.Healthy(); err == nil || !strings.Contains(err.Error(), "off the NATS server's") {
		t.Errorf("b.Healthy() = %v, want the offset", err)
	}
	cb.Step(-2 * time.Minute) // set right
	if p, _ := lb.TryAcquire(cb.Now()); p != nil {
		t.Fatal("b got a permit as its clock was set right, before it was measured")
	}
	probe(b)
	if err := b.Healthy(); err != nil {
		t.Fatalf("b.Healthy() = %v after the clock was set right and measured", err)
	}
	if p, wait := lb.TryAcquire(cb.Now()); p != nil || wait < 58*time.Second || wait > 61*time.Second {
		t.Fatalf("b: permit %v, wait %v; want none for about a minute: a's 100 calls fill it", p != nil, wait)
	}
}

// TestJournalReadDuringAStepCountsOnceTheClockIsRight: while this
// process's clock is two minutes ahead, another replica's 100 ended calls,
// a call under way and a 30 s pause come through the journal. Once the
// clock is set right and measured, they count where they are: the minute
// is full and the tenant paused. Placed by the stepped clock when they
// came and kept there, they would have stayed two minutes too old.
func TestJournalReadDuringAStepCountsOnceTheClockIsRight(t *testing.T) {
	j := &memJournal{last: map[string]uint64{}}
	ca, cb := steptest.NewClock(t), steptest.NewClock(t)
	a, la := j.processWith(t, SharedOptions{Clock: ca, Margin: 100 * time.Millisecond, Lease: 10 * time.Second}, Default())
	b, lb := j.processWith(t, SharedOptions{Clock: cb, Margin: 100 * time.Millisecond, Lease: 10 * time.Second}, Default())
	cb.Step(2 * time.Minute)
	probe(b)
	for range 99 {
		call(t, la).CompleteNow()
	}
	defer call(t, la).Release() // under way
	la.tenant.Pause(ca.Now(), 30*time.Second)
	flush(t, a)
	cb.Step(-2 * time.Minute)
	if p, _ := lb.TryAcquire(cb.Now()); p != nil {
		t.Fatal("b got a permit as its clock was set right, before it was measured")
	}
	probe(b)
	if err := b.Healthy(); err != nil {
		t.Fatalf("b.Healthy() = %v after the clock was set right and measured", err)
	}
	now := cb.Now()
	if got := lb.Remaining(now); got[0] != 0 || got[1] != 1400 {
		t.Errorf("remaining %v, want [0 1400]: a's 99 ended calls and one under way", got)
	}
	if until := lb.tenant.PausedUntil().Sub(now); until < 28*time.Second || until > 31*time.Second {
		t.Errorf("paused for %v more, want about 30s", until)
	}
	if p, _ := lb.TryAcquire(now); p != nil {
		t.Fatal("b got a permit in a full, paused minute")
	}
}

// TestEndDatedFarAheadIsCapped: another replica, its clock ten years
// ahead, ends a call. Its end counts from at most the longest window
// ahead (and the margin), so the window of one frees two minutes on.
// Taken as dated, it held the place for ten years.
func TestEndDatedFarAheadIsCapped(t *testing.T) {
	clock := clockwork.NewFakeClockAt(epoch)
	j := &memJournal{last: map[string]uint64{}}
	margin := 100 * time.Millisecond
	_, l := j.processWith(t, SharedOptions{Clock: clock, Margin: margin, Lease: 10 * time.Second}, []Window{{Count: 1, Length: time.Minute}})
	ahead := clock.Now().AddDate(10, 0, 0).UnixNano()
	if _, err := j.Append(t.Context(), "contoso", Event{Writer: "ahead", Done: []Call{{API: "offboard", ID: 1, At: ahead}}}, 0); err != nil {
		t.Fatal(err)
	}
	if p, wait := l.TryAcquire(clock.Now()); p != nil || wait != 2*time.Minute+margin {
		t.Fatalf("permit %v, wait %v; want none for %v", p != nil, wait, 2*time.Minute+margin)
	}
	clock.Advance(2*time.Minute + margin + time.Nanosecond)
	if p, _ := l.TryAcquire(clock.Now()); p == nil {
		t.Fatal("no permit two minutes after the end dated ten years ahead")
	}
}

// TestJournalReadWhileBehindCountsOnceTheClockIsRight: while this
// process's clock is two minutes behind, another replica's 100 calls end;
// to this clock they end in its future. Once the clock is set right and
// measured, they fill the minute. Cut to this clock's now when they came
// (a cap on ends dated ahead), they would have counted two minutes too
// early: 200 calls in a minute.
func TestJournalReadWhileBehindCountsOnceTheClockIsRight(t *testing.T) {
	j := &memJournal{last: map[string]uint64{}}
	ca, cb := steptest.NewClock(t), steptest.NewClock(t)
	a, la := j.processWith(t, SharedOptions{Clock: ca, Margin: 100 * time.Millisecond, Lease: 10 * time.Second}, Default())
	b, lb := j.processWith(t, SharedOptions{Clock: cb, Margin: 100 * time.Millisecond, Lease: 10 * time.Second}, Default())
	cb.Step(-2 * time.Minute)
	probe(b)
	for range 100 {
		call(t, la).CompleteNow()
	}
	flush(t, a)
	cb.Step(2 * time.Minute)
	_ = b.Healthy() // the step seen
	probe(b)
	if err := b.Healthy(); err != nil {
		t.Fatalf("b.Healthy() = %v after the clock was set right and measured", err)
	}
	if got := lb.Remaining(cb.Now()); got[0] != 0 || got[1] != 1400 {
		t.Errorf("remaining %v, want [0 1400]: a's 100 calls of this second", got)
	}
}

// TestEntryWrittenBeforeABackwardStepDoesNotMeasureIt: this process's
// clock is stepped 1.5 s back (the margin is 2 s: half of it may be off),
// and an entry it wrote just before the step arrives. Dated from before
// the step, it tells nothing of the clock after it: calls wait for an
// entry written since. Its time being later than the step's (a step
// back), it was taken as written after, and calls started with the clock
// 1.5 s off.
func TestEntryWrittenBeforeABackwardStepDoesNotMeasureIt(t *testing.T) {
	j := &memJournal{last: map[string]uint64{}}
	cb := steptest.NewClock(t)
	b, lb := j.processWith(t, SharedOptions{Clock: cb, Margin: 2 * time.Second, Lease: 10 * time.Second}, Default())
	probe(b)
	before := Event{Writer: b.Writer()}
	before.Written, before.Gen = b.Stamp()
	server := time.Now().Round(0)
	cb.Step(-1500 * time.Millisecond)
	if b.Healthy() == nil {
		t.Fatal("the step was not seen")
	}
	b.ObserveStamp(before, server)
	if err := b.Healthy(); err == nil || !strings.Contains(err.Error(), "stepped") {
		t.Fatalf("b.Healthy() = %v after an entry from before the step; want still stepped", err)
	}
	if p, _ := lb.TryAcquire(cb.Now()); p != nil {
		t.Fatal("a permit with the clock 1.5s off, measured by an entry from before the step")
	}
	probe(b) // written after the step: measures it
	if err := b.Healthy(); err == nil || !strings.Contains(err.Error(), "off the NATS server's") {
		t.Fatalf("b.Healthy() = %v; want the clock 1.5s off", err)
	}
}

// TestEndOfACallAcrossABackwardStep: a's wall clock is stepped two
// minutes back while its call is under way. The call's end, read by that
// clock, is two minutes before the server counted it; written so, the
// other replicas took it out of their minute at once and called again.
// An end whose call was entered before a step a has seen is written at
// the call's due time, by the clock as it was when the call was entered:
// the latest moment the server could have counted it.
func TestEndOfACallAcrossABackwardStep(t *testing.T) {
	ca, a, la, lb := stepAndReal(t, []Window{{Count: 1, Length: time.Minute}})
	p := call(t, la)
	ca.Step(-2 * time.Minute)
	p.CompleteNow()
	flush(t, a)
	if q, wait := lb.TryAcquire(time.Now()); q != nil || wait < time.Minute {
		t.Fatalf("b: permit %v, wait %v; want none for more than a minute: a's call fills it", q != nil, wait)
	}
}

// TestPauseAcrossABackwardStep: a's wall clock is stepped two minutes
// back, then a call of a's is answered 429 with a Retry-After of 90 s.
// The pause, written by the stepped clock, ended 30 s before the server's
// now, and b called at once into the throttling. Written with the step
// added back, b waits for it; and so once the step is measured, with a's
// clock known to be two minutes behind.
func TestPauseAcrossABackwardStep(t *testing.T) {
	for _, measured := range []bool{false, true} {
		ca, a, la, lb := stepAndReal(t, []Window{{Count: 100, Length: time.Minute}})
		probe(a) // a wrote before the step
		ca.Step(-2 * time.Minute)
		if measured {
			probe(a)
		}
		la.tenant.Pause(ca.Now(), 90*time.Second)
		flush(t, a)
		if q, wait := lb.TryAcquire(time.Now()); q != nil || wait < 85*time.Second {
			t.Errorf("step measured %v: b: permit %v, wait %v; want none for 90s: a's pause", measured, q != nil, wait)
		}
	}
}

// stepAndReal is two processes over one journal, with windows ws: a, its
// limiter la and its clock ca, which the test steps; and b's limiter lb,
// on the real clock.
func stepAndReal(t *testing.T, ws []Window) (ca *steptest.Clock, a *Shared, la, lb *Limiter) {
	t.Helper()
	j := &memJournal{last: map[string]uint64{}}
	ca = steptest.NewClock(t)
	const margin, lease = 100 * time.Millisecond, 10 * time.Second
	a, la = j.processWith(t, SharedOptions{Clock: ca, Margin: margin, Lease: lease}, ws)
	_, lb = j.process(t, clockwork.NewRealClock(), margin, lease, ws)
	return ca, a, la, lb
}
