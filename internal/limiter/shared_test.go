package limiter

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/jonboulle/clockwork"

	"github.com/contoso-secops/mde-offboard/internal/testwait"
)

// memJournal is a journal in memory whose feed delivers every entry to
// every process at once, in order. Each process's feed goes on from after
// the last entry it read, as an ordered consumer does: entries numbered
// again after loseTo do not reach a process that read past them.
type memJournal struct {
	mu sync.Mutex
	// order is taken before mu is let go and held while an entry is
	// delivered: entries reach the readers in the order they were
	// numbered, as a consumer delivers them.
	order   sync.Mutex
	seq     uint64
	last    map[string]uint64
	readers []*Shared
	cursor  map[*Shared]uint64 // the last entry each process read
	// hold, while set, keeps new entries from the feed: another replica's
	// write that this process has not read yet.
	hold    bool
	pending []func()
	// history, while keep is set, holds every entry, for a process
	// started later to read back (restart).
	keep    bool
	history []memEntry
}

type memEntry struct {
	seq    uint64
	tenant string
	ev     Event
}

func (j *memJournal) Append(_ context.Context, tenant string, ev Event, last uint64) (uint64, error) {
	j.mu.Lock()
	if j.last[tenant] != last {
		defer j.mu.Unlock()
		return 0, &ConflictError{Last: j.last[tenant]}
	}
	j.seq++
	seq := j.seq
	j.last[tenant] = seq
	if j.keep {
		j.history = append(j.history, memEntry{seq, tenant, ev})
	}
	if j.cursor == nil {
		j.cursor = map[*Shared]uint64{}
	}
	var readers []*Shared
	for _, r := range j.readers {
		if seq > j.cursor[r] {
			j.cursor[r] = seq
			readers = append(readers, r)
		}
	}
	deliver := func() {
		for _, r := range readers {
			r.Deliver(seq, tenant, ev)
		}
	}
	if j.hold {
		j.pending = append(j.pending, deliver)
		j.mu.Unlock()
		return seq, nil
	}
	j.order.Lock()
	j.mu.Unlock()
	deliver()
	j.order.Unlock()
	return seq, nil
}

// loseTo forgets the entries after seq (a store lost or restored); the
// tenant's last is then last, and the next entry is numbered seq+1.
func (j *memJournal) loseTo(seq uint64, tenant string, last uint64) {
	j.mu.Lock()
	defer j.mu.Unlock()
	j.seq, j.last[tenant] = seq, last
}

// release delivers the held entries.
func (j *memJournal) release() {
	j.mu.Lock()
	pending := j.pending
	j.pending, j.hold = nil, false
	j.mu.Unlock()
	for _, d := range pending {
		d()
	}
}

func (j *memJournal) process(t *testing.T, clock clockwork.Clock, margin, lease time.Duration, ws []Window) (*Shared, *Limiter) {
	t.Helper()
	return j.processWith(t, SharedOptions{Clock: clock, Margin: margin, Lease: lease}, ws)
}

// processWith is a process over the journal with the options o, taking
// the tenant contoso with windows ws.
func (j *memJournal) processWith(t *testing.T, o SharedOptions, ws []Window) (*Shared, *Limiter) {
	t.Helper()
	return j.processThrough(t, j, o, ws)
}

// processThrough is processWith writing through w (j, or a journal made
// over it), while j's feed brings the process its entries.
func (j *memJournal) processThrough(t *testing.T, w Journal, o SharedOptions, ws []Window) (*Shared, *Limiter) {
	t.Helper()
	o.Journal = w
	s := NewShared(o)
	t.Cleanup(func() { s.Close(context.Background()) })
	l := s.Tenant("contoso").Add("offboard", ws)
	j.mu.Lock()
	j.readers = append(j.readers, s)
	j.mu.Unlock()
	s.MarkCaughtUp(0)
	return s, l
}

// call takes a permit, enters it in the journal and completes it at once.
func call(t *testing.T, l *Limiter) *Permit {
	t.Helper()
	p, wait := l.TryAcquire(l.tenant.clock.Now())
	if p == nil {
		t.Fatalf("no permit (wait %v)", wait)
	}
	if _, err := p.Record(t.Context()); err != nil {
		t.Fatal(err)
	}
	return p
}

// flush writes what p's process has pending (the call ends).
func flush(t *testing.T, s *Shared) {
	t.Helper()
	for _, tn := range s.tenants {
		if err := tn.writeOnce(t.Context()); err != nil {
			t.Fatal(err)
		}
	}
}

func TestSharedOtherProcessTimesGetTheMargin(t *testing.T) {
	t.Parallel()
	clock := clockwork.NewFakeClockAt(epoch)
	j := &memJournal{last: map[string]uint64{}}
	ws := []Window{{Count: 1, Length: time.Second}}
	const margin = 100 * time.Millisecond
	a, la := j.process(t, clock, margin, 10*time.Second, ws)
	_, lb := j.process(t, clock, margin, 10*time.Second, ws)

	call(t, la).CompleteNow()
	flush(t, a)
	// A's own call leaves A's window after 1s; for B, whose clock may be
	// behind, it ended 100ms later.
	clock.Advance(time.Second)
	if got := la.Remaining(clock.Now()); got[0] != 1 {
		t.Errorf("A at 1s: %d free, want 1", got[0])
	}
	if p, wait := lb.TryAcquire(clock.Now()); p != nil || wait != margin {
		t.Errorf("B at 1s: permit %v, wait %v; want none for %v", p != nil, wait, margin)
	}
	clock.Advance(margin)
	if got := lb.Remaining(clock.Now()); got[0] != 1 {
		t.Errorf("B at 1.1s: %d free, want 1", got[0])
	}
}

func TestSharedCallOfADeadProcessCountsUntilDue(t *testing.T) {
	t.Parallel()
	clock := clockwork.NewFakeClockAt(epoch)
	j := &memJournal{last: map[string]uint64{}}
	ws := []Window{{Count: 2, Length: time.Second}}
	const lease, margin = 3 * time.Second, 100 * time.Millisecond
	a, la := j.process(t, clock, margin, lease, ws)
	_, lb := j.process(t, clock, margin, lease, ws)

	pa := call(t, la) // A hangs with it under way: its end is not written
	for _, at := range []struct {
		d    time.Duration
		free int
	}{
		{0, 1},
		{lease, 1},                          // under way until due, with the margin
		{lease + margin, 1},                 // then answered at due+margin ...
		{lease + margin + time.Second/2, 1}, // ... and in the window for a second
	} {
		if got := lb.Remaining(epoch.Add(at.d)); got[0] != at.free {
			t.Errorf("B at %v: %d free, want %d", at.d, got[0], at.free)
		}
	}
	// An end written after the call was due (the process was only slow)
	// is not counted a second time.
	clock.Advance(lease + margin + time.Second/2)
	pa.CompleteNow()
	flush(t, a)
	if got := lb.Remaining(clock.Now()); got[0] != 1 {
		t.Errorf("B after the late end: %d free, want 1", got[0])
	}
	if got := lb.Remaining(epoch.Add(lease + margin + time.Second)); got[0] != 2 {
		t.Errorf("B a second after the call was due: %d free, want 2", got[0])
	}
}

func TestSharedRecordWaitsForAnEntryNotYetRead(t *testing.T) {
	t.Parallel()
	clock := clockwork.NewFakeClockAt(epoch)
	j := &memJournal{last: map[string]uint64{}}
	ws := []Window{{Count: 1, Length: time.Second}}
	_, la := j.process(t, clock, 0, 10*time.Second, ws)
	_, lb := j.process(t, clock, 0, 10*time.Second, ws)

	// B takes a permit (its view is empty), then A's entry is written but
	// not yet read by B.
	pb, _ := lb.TryAcquire(clock.Now())
	if pb == nil {
		t.Fatal("B: no permit")
	}
	j.mu.Lock()
	j.hold = true
	j.mu.Unlock()
	pa := call(t, la)
	defer pa.CompleteNow()

	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	recorded := make(chan error, 1)
	go func() {
		_, err := pb.Record(ctx)
		recorded <- err
	}()
	select {
	case err := <-recorded:
		t.Fatalf("B entered its call while A's took the window's only place (err %v)", err)
	case <-time.After(100 * time.Millisecond):
	}
	// Once B reads A's entry it sees the window full, and waits for it.
	j.release()
	select {
	case err := <-recorded:
		t.Fatalf("B entered its call in a full window (err %v)", err)
	case <-time.After(100 * time.Millisecond):
	}
	cancel()
	if err := testwait.For(t, recorded, 10*time.Second, "Record to return after the cancel"); !errors.Is(err, context.Canceled) {
		t.Fatalf("Record after cancel: %v", err)
	}
	pb.Release()
}

// TestSharedRecordDoesNotWaitForASecondSpreadToken: spreading paces the
// permits; entering a permit's call in the journal must not wait for the
// next token as well, or the pace would halve.
func TestSharedRecordDoesNotWaitForASecondSpreadToken(t *testing.T) {
	t.Parallel()
	clock := clockwork.NewFakeClockAt(epoch)
	j := &memJournal{last: map[string]uint64{}}
	s := NewShared(SharedOptions{Journal: j, Clock: clock, Lease: time.Second})
	t.Cleanup(func() { s.Close(context.Background()) })
	l := s.Tenant("contoso").AddSpread("offboard", []Window{{Count: 10, Length: time.Second}}, 1)
	s.MarkCaughtUp(0)
	p, _ := l.TryAcquire(clock.Now())
	if p == nil {
		t.Fatal("no permit")
	}
	ctx, cancel := context.WithTimeout(t.Context(), time.Second) // real time: the fake clock never moves
	defer cancel()
	if _, err := p.Record(ctx); err != nil {
		t.Fatalf("Record waited for another token: %v", err)
	}
	p.CompleteNow()
}

// TestSharedWaiterWakesWhenADeadProcessCallComesDue: calls of a process
// that died fill the window; no entry will ever come, yet a waiter must
// get its permit once they are due and out of the window.
func TestSharedWaiterWakesWhenADeadProcessCallComesDue(t *testing.T) {
	t.Parallel()
	clock := clockwork.NewFakeClockAt(epoch)
	j := &memJournal{last: map[string]uint64{}}
	ws := []Window{{Count: 1, Length: time.Second}}
	const lease = 3 * time.Second
	_, la := j.process(t, clock, 0, lease, ws)
	_, lb := j.process(t, clock, 0, lease, ws)
	call(t, la) // A dies with it under way

	got := make(chan error, 1)
	go func() {
		p, err := lb.Acquire(t.Context())
		if err == nil {
			p.Release()
		}
		got <- err
	}()
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second) // real time
	defer cancel()
	for _, step := range []time.Duration{lease, time.Second} {
		if err := clock.BlockUntilContext(ctx, 1); err != nil {
			t.Fatalf("B does not wait on a timer: %v", err)
		}
		clock.Advance(step)
	}
	select {
	case err := <-got:
		if err != nil {
			t.Fatal(err)
		}
	case <-ctx.Done():
		t.Fatal("B still waits after A's call came due and left the window")
	}
}

// TestSharedClockBehindStopsCallsUntilBack: entries stamped by the server
// 2s after this process received them (by its clock) show its clock 2s
// behind; with a 500ms margin no permit is granted, and a waiter gets one
// once the clock is back within the margin.
func TestSharedClockBehindStopsCallsUntilBack(t *testing.T) {
	t.Parallel()
	clock := clockwork.NewFakeClockAt(epoch)
	j := &memJournal{last: map[string]uint64{}}
	s, l := j.process(t, clock, 500*time.Millisecond, time.Second, []Window{{Count: 5, Length: time.Second}})

	s.ObserveStamp(Event{Writer: "other"}, clock.Now().Add(2*time.Second))
	if off := s.ClockOffset(); off != -2*time.Second {
		t.Errorf("offset %v, want -2s", off)
	}
	if err := s.Healthy(); err == nil {
		t.Error("healthy with the clock 2s behind")
	}
	if p, _ := l.TryAcquire(clock.Now()); p != nil {
		t.Fatal("permit with the clock 2s behind")
	}
	got := make(chan error, 1)
	go func() {
		p, err := l.Acquire(t.Context())
		if err == nil {
			p.Release()
		}
		got <- err
	}()
	s.ObserveStamp(Event{Writer: "other"}, clock.Now().Add(-10*time.Millisecond))
	if err := s.Healthy(); err != nil {
		t.Errorf("clock back within the margin: %v", err)
	}
	if err := testwait.For(t, got, 10*time.Second, "a permit with the clock back within the margin"); err != nil {
		t.Fatal(err)
	}
}

// entryLog is a memJournal that keeps every entry.
type entryLog struct {
	memJournal
	mu      sync.Mutex
	entries []Event
	added   chan struct{}
}

func (j *entryLog) Append(ctx context.Context, tenant string, ev Event, last uint64) (uint64, error) {
	seq, err := j.memJournal.Append(ctx, tenant, ev, last)
	if err == nil {
		j.mu.Lock()
		j.entries = append(j.entries, ev)
		j.mu.Unlock()
		j.added <- struct{}{}
	}
	return seq, err
}

// TestSharedEndsWaitToGoTogether: the ends of calls are not written one
// entry each as they come, but together (here: with the pause that cuts
// the wait short, the linger being an hour); a pause is written at once.
func TestSharedEndsWaitToGoTogether(t *testing.T) {
	t.Parallel()
	clock := clockwork.NewFakeClockAt(epoch)
	j := &entryLog{memJournal: memJournal{last: map[string]uint64{}}, added: make(chan struct{}, 100)}
	s := NewShared(SharedOptions{Journal: j, Clock: clock, Lease: 10 * time.Second, EndsLinger: time.Hour})
	t.Cleanup(func() { s.Close(context.Background()) })
	tn := s.Tenant("contoso")
	l := tn.Add("offboard", []Window{{Count: 100, Length: time.Minute}})
	s.MarkCaughtUp(0)

	permits := make([]*Permit, 10)
	for i := range permits {
		permits[i] = call(t, l)
		testwait.For(t, j.added, 10*time.Second, "a reservation written") // its reservation
	}
	for _, p := range permits {
		p.CompleteNow()
	}
	// Nothing is written for the ends alone while they linger. (A writer
	// that did not wait writes them within microseconds.)
	select {
	case <-j.added:
		t.Fatal("the ends were written at once")
	case <-time.After(200 * time.Millisecond):
	}
	tn.Pause(clock.Now(), time.Second)
	select {
	case <-j.added:
	case <-time.After(10 * time.Second):
		t.Fatal("the pause was not written")
	}
	j.mu.Lock()
	defer j.mu.Unlock()
	if len(j.entries) != 11 {
		t.Fatalf("%d entries, want 10 reservations and one entry with the ends and the pause", len(j.entries))
	}
	if last := j.entries[10]; last.Paused == 0 || len(last.Done) != 10 {
		t.Errorf("last entry: pause %d, %d ends; want the pause and the 10 ends", last.Paused, len(last.Done))
	}
}

// gatedJournal is an entryLog whose appends wait for a gate while it is
// closed; appending says when an append has come to the gate.
type gatedJournal struct {
	*entryLog
	gate      chan struct{}
	appending chan struct{}
}

func (j *gatedJournal) Append(ctx context.Context, tenant string, ev Event, last uint64) (uint64, error) {
	select {
	case j.appending <- struct{}{}:
	default:
	}
	<-j.gate
	return j.entryLog.Append(ctx, tenant, ev, last)
}

// TestSharedCallsStartingTogetherShareAnEntry: calls whose permits wait to
// be entered while another entry is being written go in one entry
// together, not one entry each in turn.
func TestSharedCallsStartingTogetherShareAnEntry(t *testing.T) {
	t.Parallel()
	clock := clockwork.NewFakeClockAt(epoch)
	log := &entryLog{memJournal: memJournal{last: map[string]uint64{}}, added: make(chan struct{}, 100)}
	j := &gatedJournal{entryLog: log, gate: make(chan struct{}), appending: make(chan struct{}, 1)}
	s := NewShared(SharedOptions{Journal: j, Clock: clock, Lease: 10 * time.Second, EndsLinger: time.Hour})
	t.Cleanup(func() { s.Close(context.Background()) })
	tn := s.Tenant("contoso")
	l := tn.Add("offboard", []Window{{Count: 100, Length: time.Minute}})
	s.MarkCaughtUp(0)

	const n = 6
	errs := make(chan error, n)
	record := func() {
		p, _ := l.TryAcquire(clock.Now())
		if p == nil {
			t.Fatal("no permit")
		}
		go func() {
			_, err := p.Record(t.Context())
			errs <- err
		}()
	}
	// One Record writes (held at the gate); the other five come while it
	// does, and wait for it.
	open := sync.OnceFunc(func() { close(j.gate) })
	t.Cleanup(open) // before the Close, which waits for the write held
	record()
	testwait.For(t, j.appending, 10*time.Second, "the first entry at the gate")
	for range n - 1 {
		record()
	}
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(time.Millisecond) {
		tn.mu.Lock()
		queued := len(tn.recording)
		tn.mu.Unlock()
		if queued == n {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d calls wait to be entered after 10 s", queued, n)
		}
	}
	open()
	for range n {
		if err := testwait.For(t, errs, 10*time.Second, "a call entered"); err != nil {
			t.Fatal(err)
		}
	}
	log.mu.Lock()
	defer log.mu.Unlock()
	var sizes []int
	for _, ev := range log.entries {
		sizes = append(sizes, len(ev.Reserved))
	}
	if len(sizes) != 2 || sizes[0] != 1 || sizes[1] != n-1 {
		t.Errorf("reservations per entry %v, want [1 %d]", sizes, n-1)
	}
	if got := l.Remaining(clock.Now()); got[0] != 100-n {
		t.Errorf("remaining %v, want %d", got, 100-n)
	}
}

// failOnce is an entryLog whose first append fails.
type failOnce struct {
	*entryLog
	failed bool
}

func (j *failOnce) Append(ctx context.Context, tenant string, ev Event, last uint64) (uint64, error) {
	if !j.failed {
		j.failed = true
		return 0, errors.New("no responders")
	}
	return j.entryLog.Append(ctx, tenant, ev, last)
}

// TestSharedFailedEntryIsUndone: a reservation whose entry could not be
// written is not taken as entered: the next Record writes it.
func TestSharedFailedEntryIsUndone(t *testing.T) {
	t.Parallel()
	clock := clockwork.NewFakeClockAt(epoch)
	j := &failOnce{entryLog: &entryLog{memJournal: memJournal{last: map[string]uint64{}}, added: make(chan struct{}, 100)}}
	s := NewShared(SharedOptions{Journal: j, Clock: clock, Lease: 10 * time.Second, EndsLinger: time.Hour})
	t.Cleanup(func() { s.Close(context.Background()) })
	l := s.Tenant("contoso").Add("offboard", []Window{{Count: 2, Length: time.Minute}})
	s.MarkCaughtUp(0)

	p, _ := l.TryAcquire(clock.Now())
	if _, err := p.Record(t.Context()); err == nil {
		t.Fatal("Record succeeded over a failing journal")
	}
	if _, err := p.Record(t.Context()); err != nil {
		t.Fatal(err)
	}
	j.mu.Lock()
	entries := append([]Event(nil), j.entries...)
	j.mu.Unlock()
	if len(entries) != 1 || len(entries[0].Reserved) != 1 || entries[0].Reserved[0].ID != p.id {
		t.Fatalf("entries %+v, want one with the permit's reservation (id %d)", entries, p.id)
	}
	// The failed attempt's id is ended in the journal, in case its entry
	// was stored after all.
	if len(entries[0].Done) != 1 || entries[0].Done[0].At != 0 || entries[0].Done[0].ID == p.id {
		t.Errorf("ends %+v, want the failed attempt's id, never sent", entries[0].Done)
	}
	p.CompleteNow()
	if got := l.Remaining(clock.Now()); got[0] != 1 {
		t.Errorf("remaining %v after one call, want 1", got)
	}
}

// TestLookAheadIsNoPlaceForAnotherReplicasCall: a replica died with a call
// under way that fills the window. When that call comes due it turns into
// a stamp and holds the window a second more: its due time is only when
// to look again. A loop that fetches 10 ms ahead must not take it for a
// place that frees, neither just before it nor after it.
func TestLookAheadIsNoPlaceForAnotherReplicasCall(t *testing.T) {
	t.Parallel()
	clock := clockwork.NewFakeClockAt(epoch)
	j := &memJournal{last: map[string]uint64{}}
	ws := []Window{{Count: 1, Length: time.Second}}
	const lease, lead = 3 * time.Second, 10 * time.Millisecond
	_, dead := j.process(t, clock, 0, lease, ws)
	_, alive := j.process(t, clock, 0, lease, ws)
	call(t, dead) // never ends: due at +3s, then in the window until +4s

	clock.Advance(lease - 5*time.Millisecond)
	if n := alive.AvailableWithin(clock.Now(), lead, 50); n != 0 {
		t.Errorf("AvailableWithin %v, 5ms before the dead replica's call comes due = %d, want 0", lead, n)
	}
	if p, wait := alive.TryAcquire(clock.Now()); p != nil || wait != 0 {
		t.Errorf("TryAcquire 5ms before the dead replica's call comes due: permit %v wait %v; want none and no known wait", p != nil, wait)
	}
	woke := make(chan time.Duration, 1)
	go func() {
		if err := alive.WaitWithin(t.Context(), lead); err == nil {
			woke <- clock.Since(epoch)
		}
		close(woke)
	}()
	waiting := func() {
		t.Helper()
		select {
		case at := <-woke:
			t.Fatalf("WaitWithin %v returned at +%v; no call may start before +4s", lead, at)
		case <-time.After(20 * time.Millisecond): // real time: lets a wrongly woken waiter report
		}
		ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
		defer cancel()
		if err := clock.BlockUntilContext(ctx, 1); err != nil {
			t.Fatal("the waiter is not waiting on the clock")
		}
	}
	waiting()
	clock.Advance(5 * time.Millisecond) // +3s: the call comes due and holds the window
	waiting()
	clock.Advance(time.Second - 2*lead) // +3.98s
	waiting()
	clock.Advance(lead) // +3.99s: the place frees within the lead
	if at := testwait.For(t, woke, 10*time.Second, "WaitWithin to return"); at != 4*time.Second-lead {
		t.Fatalf("WaitWithin %v returned at +%v, want +3.99s", lead, at)
	}
	if n := alive.AvailableWithin(clock.Now(), lead, 50); n != 1 {
		t.Errorf("AvailableWithin %v at +3.99s = %d, want 1", lead, n)
	}
}

// TestPermitAheadIsEnteredBeforeItsPlaceFrees: a permit taken ahead of its
// place (TryAcquireAhead) is entered in the journal while the place is
// still taken, so that its call can go out the moment it frees; the other
// replica counts it from then on, and gets no place for its own call
// where that one stands. No permit is taken further ahead than asked, nor
// for a place a call still under way elsewhere holds (a look again).
func TestPermitAheadIsEnteredBeforeItsPlaceFrees(t *testing.T) {
	t.Parallel()
	clock := clockwork.NewFakeClockAt(epoch)
	j := &memJournal{last: map[string]uint64{}}
	ws := []Window{{Count: 2, Length: time.Second}}
	const lease, ahead = 3 * time.Second, 5 * time.Millisecond
	sa, a := j.process(t, clock, 0, lease, ws)
	_, b := j.process(t, clock, 0, lease, ws)
	first, second := call(t, a), call(t, a)
	clock.Advance(10 * time.Millisecond)
	first.CompleteNow() // its place frees at +1.01s
	flush(t, sa)
	clock.Advance(20 * time.Millisecond)
	second.CompleteNow() // at +1.03s
	flush(t, sa)

	clock.Advance(960 * time.Millisecond) // +990ms: +1.01s is 20ms away
	if p, wait := b.TryAcquireAhead(clock.Now(), ahead); p != nil || wait != 20*time.Millisecond {
		t.Fatalf("TryAcquireAhead %v, 20ms before the place frees: permit %v, wait %v; want none for 20ms", ahead, p != nil, wait)
	}
	clock.Advance(17 * time.Millisecond) // +1.007s: 3ms before
	p, _ := b.TryAcquireAhead(clock.Now(), ahead)
	if p == nil || !p.NotBefore().Equal(epoch.Add(1010*time.Millisecond)) {
		t.Fatalf("TryAcquireAhead %v, 3ms before the place frees: %v", ahead, p)
	}
	rctx, cancel := context.WithTimeout(t.Context(), 5*time.Second) // real time: a Record waiting for the place would wait for ever
	defer cancel()
	if _, err := p.Record(rctx); err != nil {
		t.Fatalf("Record 3ms before its place frees: %v", err)
	}
	// a reads b's entry: the place freeing at +1.01s is b's call's.
	if q, _ := a.TryAcquireAhead(clock.Now(), 30*time.Millisecond); q == nil || !q.NotBefore().Equal(epoch.Add(1030*time.Millisecond)) {
		t.Fatalf("a, after b's entry: %v; want the place that frees at +1.03s", q)
	}
	if q, wait := a.TryAcquireAhead(clock.Now(), time.Hour); q != nil || wait != 0 {
		t.Errorf("a, a third permit with the window full of calls under way: %v, wait %v", q != nil, wait)
	}
}
