package limiter

import (
	"context"
	"math"
	"slices"
	"sync"
	"time"

	"github.com/jonboulle/clockwork"
	"golang.org/x/time/rate"
)

// Tenant holds the limiters of one tenant's APIs. They share one lock and
// one pause: a 429 on any API stops every call of the tenant until the
// Retry-After it named has passed.
type Tenant struct {
	clock clockwork.Clock
	base  time.Time // the origin of its limiters' own stamps (since)
	name  string
	// shared, when set, is the journal every replica records its calls
	// in (shared.go); nil keeps the quota in this process only.
	shared *Shared

	mu          sync.Mutex
	pausedUntil time.Time // this process's pause (a 429 it met)
	// journalPause is the end of another replica's pause, in Unix ns: a
	// wall clock time, compared with the wall clock at each look, as the
	// other replicas' calls are (Limiter.others).
	journalPause int64
	changed      chan struct{} // closed and replaced whenever capacity may have grown
	apis         map[string]*Limiter

	// Journal state, guarded by mu (shared.go).
	lastSeq uint64 // the tenant's last journal entry applied here
	// gone, once set, refuses every journal write of the tenant: one
	// was stored under a number the feed had read past (write.go).
	gone    error
	pending Event  // completions and pauses not written to the journal yet
	nextID  uint64 // the last call id handed out
	// stored are the calls whose ends the feed brought in an entry of
	// this process's that its write did not see stored (its answer lost,
	// or not come yet): they are not written again.
	stored map[uint64]struct{}
	// wmu serialises this process's journal writes for the tenant, so
	// that the entry a write expects to follow cannot move meanwhile
	// except by another replica.
	wmu     sync.Mutex
	flush   chan struct{} // wakes the writer of pending
	writing bool          // the writer of pending runs (writePending)
	// recording are the permits whose Record waits for wmu: whoever
	// holds it enters all that fit in one entry (group commit), so calls
	// that start together cost one journal write, not one each in turn.
	recording []*Permit
}

// NewTenant returns an empty set of limiters that reads time from clock
// and keeps its quota in this process only.
func NewTenant(clock clockwork.Clock) *Tenant {
	return &Tenant{clock: clock, base: clock.Now(), changed: make(chan struct{}), apis: make(map[string]*Limiter)}
}

// Add creates the limiter of one API. Windows must not be empty.
func (t *Tenant) Add(api string, windows []Window) *Limiter {
	return t.AddSpread(api, windows, 0)
}

// AddSpread creates the limiter of one API whose calls are also spread
// out: a token bucket refilling at the rate of the shortest window
// (100/1m: one call every 600ms) lets at most burst calls go at once. The
// windows alone would let a backlog fire 100 calls in the first second of
// every minute; the bucket trades a little drain speed for an even load on
// the API. burst 0 means no spreading. The bucket never decides what the
// quota allows: the exact windows do.
func (t *Tenant) AddSpread(api string, windows []Window, burst int) *Limiter {
	t.mu.Lock()
	defer t.mu.Unlock()
	l := &Limiter{tenant: t, api: api, windows: slices.Clone(windows), foreign: map[callKey]int64{}, expired: map[callKey]int64{}}
	for _, w := range windows {
		l.keep = max(l.keep, w.Count)
		l.horizon = max(l.horizon, w.Length)
	}
	if burst > 0 {
		// The shortest window sets the pace; of two such, the tighter,
		// which alone decides how many calls go.
		short := windows[0]
		for _, w := range windows {
			if w.Length < short.Length || w.Length == short.Length && w.Count < short.Count {
				short = w
			}
		}
		l.spread = rate.NewLimiter(rate.Limit(float64(short.Count)/short.Length.Seconds()), burst)
	}

	t.apis[api] = l
	return l
}

// API returns the limiter of an API, or nil.
func (t *Tenant) API(api string) *Limiter {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.apis[api]
}

// Pause stops every API of the tenant until now+d (a 429's Retry-After). A
// shorter pause never cuts a longer one short.
// With a journal, every replica learns of the pause.
func (t *Tenant) Pause(now time.Time, d time.Duration) {
	t.mu.Lock()
	defer t.mu.Unlock()
	until := now.Add(d)
	if until.After(t.pausedUntil) {
		t.pausedUntil = until
	}
	if t.shared != nil {
		// The others read it by their clocks: a clock of this process's
		// found behind the server's, or stepped back and not measured
		// since, would end it early for them by as much.
		if written := until.Add(t.shared.behind()).UnixNano(); written > t.pending.Paused {
			t.pending.Paused = written
			t.wakeWriterLocked()
		}
	}
	t.notifyLocked() // waiters recompute their deadline
}

// Flush writes what this process has pending for the journal (call
// ends, a pause) and returns once it is stored: a pause flushed is known
// to every replica, and to this one restarted, whatever happens to this
// process next. An error says it could not be stored (ctx ended, the
// journal unreachable); it stays pending and is written later, as call
// ends are. Without a journal it does nothing.
func (t *Tenant) Flush(ctx context.Context) error {
	if t.shared == nil {
		return nil
	}
	return t.writeOnce(ctx)
}

// PausedUntil reports the end of the current pause, this process's or
// another replica's (zero if never paused).
func (t *Tenant) PausedUntil() time.Time {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.pauseEndLocked(t.clock.Now())
}

// LastPause reports when the tenant's latest pause known ends or ended,
// this process's or another replica's from the journal, past or not
// (zero if none is known). A process started after a pause ended knows
// it from the journal, as the one that met the 429 does.
func (t *Tenant) LastPause() time.Time {
	t.mu.Lock()
	defer t.mu.Unlock()
	now := t.clock.Now()
	end := t.pausedUntil
	if t.journalPause != 0 {
		if theirs := now.Add(time.Duration(t.journalPause - now.UnixNano())); theirs.After(end) {
			end = theirs
		}
	}
	return end
}

// pauseEndLocked is when the tenant's pause ends, this process's or
// another replica's from the journal, whichever is later, on now's clock.
func (t *Tenant) pauseEndLocked(now time.Time) time.Time {
	end := t.pausedUntil
	if wall := now.UnixNano(); t.journalPause > wall {
		if theirs := now.Add(time.Duration(t.journalPause - wall)); theirs.After(end) {
			end = theirs
		}
	}
	return end
}

func (t *Tenant) notifyLocked() {
	close(t.changed)
	t.changed = make(chan struct{})
}

// Limiter is the exact sliding-window limiter of one tenant and API.
type Limiter struct {
	tenant  *Tenant
	api     string
	windows []Window
	keep    int           // the largest count: older stamps never matter
	horizon time.Duration // the longest window: older stamps never matter

	// Guarded by tenant.mu.
	// stamps are the completion times of this process's recent calls,
	// ascending, in nanoseconds since the tenant's base on the monotonic
	// clock (Tenant.since): a step of the wall clock does not move them.
	// others are the other replicas' (from the journal), ascending, in
	// Unix nanoseconds: wall clock times, compared with the wall clock at
	// each look, which the clock offset check keeps within the margin
	// (clock.go). As integers they take a third of a time.Time's room and
	// give the garbage collector nothing to scan; a busy tenant keeps up
	// to its largest count of them (1500 for the documented limits).
	stamps   []int64
	others   []int64
	held     int // permits of this process not yet in the journal (without one: calls under way)
	reserved int // this process's calls in the journal whose answer has not arrived
	// waiting are the callers blocked in Acquire for a permit at their
	// place, in the order they came: no permit is taken ahead of a place
	// one of them waits for, by a later one either. waited numbers them.
	waiting []uint64
	waited  uint64
	// behind are the callers blocked in AcquireBehind, in the order they
	// came (numbered with waiting's): each waits behind every caller in
	// waiting, whenever it came, and keeps its place before the later
	// ones of behind and before a behind caller that has not waited
	// (a bulk request just fetched, AcquireAheadBehind).
	behind []uint64
	// foreign are other replicas' calls under way, with the time by which
	// their answer must have arrived (Unix ns); expired are those that
	// passed it and now stand in others, so that a late completion is not
	// counted twice.
	foreign map[callKey]int64
	expired map[callKey]int64
	spread  *rate.Limiter
}

// callKey names a call in the journal: the writing process and its number.
type callKey struct {
	writer string
	id     uint64
}

// Windows returns the limiter's windows.
func (l *Limiter) Windows() []Window { return slices.Clone(l.windows) }

// TryAcquire takes a permit if a call may start at now. Otherwise it returns
// nil and how long until a place frees; a wait of zero with a nil permit
// means no time is known: capacity comes back only when a call under way
// completes (here, or another replica's when it comes due).
func (l *Limiter) TryAcquire(now time.Time) (*Permit, time.Duration) {
	return l.TryAcquireAhead(now, 0)
}

// TryAcquireAhead is TryAcquire for a call that may be prepared ahead of
// its place: a place that frees within ahead is taken now, and the
// permit's NotBefore says when it frees. The call's journal entry can
// then be written meanwhile, so that the call goes out the moment its
// place frees; it must not go out before. Until then the permit counts as
// a call under way here, and, once entered in the journal, in the other
// replicas too: the place is counted early, never late. While a caller
// waits in Acquire for its permit, no place is taken ahead of it, nor the
// place it waits for as it frees (waitersBefore).
func (l *Limiter) TryAcquireAhead(now time.Time, ahead time.Duration) (*Permit, time.Duration) {
	return l.tryAcquireAhead(now, ahead, false)
}

// TryAcquireBehind is TryAcquire for a caller that waits behind (a bulk
// request): it takes no place a caller in AcquireBehind waits for.
func (l *Limiter) TryAcquireBehind(now time.Time) (*Permit, time.Duration) {
	return l.tryAcquireAhead(now, 0, true)
}

// tryAcquireAhead is TryAcquireAhead; with behind, for a caller that
// waits behind (a bulk request): the places the callers in AcquireBehind
// wait for count as taken too.
func (l *Limiter) tryAcquireAhead(now time.Time, ahead time.Duration, behind bool) (*Permit, time.Duration) {
	t := l.tenant
	t.mu.Lock()
	defer t.mu.Unlock()
	waiters := l.waitersBefore(behind)
	if waiters > 0 {
		ahead = 0 // the place frees for a caller that waits for it
	}
	next, ok, recheck := l.nextAfterLocked(now, false, waiters)
	if !ok || recheck {
		return nil, 0
	}
	if next.After(now.Add(ahead)) {
		return nil, next.Sub(now)
	}
	return l.takeAtLocked(now, next, false), 0
}

// TryAcquireAs is TryAcquire at the priority first was taken at: for a
// place the same call needs again (its request sent a second time by the
// transport), which must not take what the first could not. A low
// permit's (AcquireLow) is taken only while half of every window stays
// free, and only at once.
func (l *Limiter) TryAcquireAs(now time.Time, first *Permit) *Permit {
	if first == nil || !first.low {
		p, _ := l.TryAcquire(now)
		return p
	}
	t := l.tenant
	t.mu.Lock()
	defer t.mu.Unlock()
	next, ok, recheck := l.nextLocked(now, true, false)
	if !ok || recheck || next.After(now) {
		return nil
	}
	return l.takeLocked(now, true)
}

// Available says how many calls could start at now one after the other,
// up to limit, if nobody else took quota meanwhile: how many permits
// TryAcquire would hand out in a row. It takes none.
func (l *Limiter) Available(now time.Time, limit int) int {
	return l.AvailableWithin(now, 0, limit)
}

// AvailableWithin is Available for calls that could start by now+lead:
// what a caller that prepares its calls lead ahead may get ready.
func (l *Limiter) AvailableWithin(now time.Time, lead time.Duration, limit int) int {
	t := l.tenant
	t.mu.Lock()
	defer t.mu.Unlock()
	held := l.held
	defer func() { l.held = held }()
	l.held += len(l.waiting) // their places are theirs (waitersBefore)
	by := now.Add(lead)
	n := 0
	for n < limit {
		next, ok, recheck := l.nextLocked(now, false, false)
		if !ok || recheck || next.After(by) {
			break // (a look again is no place)
		}
		n++
		l.held++ // as if taken: the next one counts it
	}
	if l.spread != nil {
		// The waiters take the first tokens (waitersBefore).
		n = min(n, max(int(l.spread.TokensAt(by))-len(l.waiting), 0))
	}
	return n
}

func (l *Limiter) takeLocked(now time.Time, low bool) *Permit {
	l.held++
	if l.spread != nil {
		l.spread.AllowN(now, 1)
	}
	return &Permit{l: l, low: low}
}

// takeAtLocked takes a permit at now for a place that frees at next (at
// or before now: free now).
func (l *Limiter) takeAtLocked(now, next time.Time, low bool) *Permit {
	if !next.After(now) {
		return l.takeLocked(now, low)
	}
	l.held++
	if l.spread != nil {
		// The token is there by next, not now: reserved, it is counted
		// now as taken, where AllowN would take none.
		l.spread.ReserveN(now, 1)
	}
	return &Permit{l: l, low: low, notBefore: next}
}

// Acquire blocks until a call may start, then returns its permit. While
// it waits its place is kept: no caller that came after it takes it.
func (l *Limiter) Acquire(ctx context.Context) (*Permit, error) {
	return l.acquire(ctx, false, true, 0)
}

// AcquireBehind is Acquire for work that must not hold up the rest (a
// bulk request, which must never delay a normal one): it waits behind,
// keeping no place from a caller of Acquire or TryAcquireAhead, which may
// take the place first, whenever it came, and it takes none that a
// caller waiting in Acquire keeps. Among those that wait behind it keeps
// its place: a caller of AcquireBehind that came later, or of
// AcquireAheadBehind (a bulk request fetched since), takes a place only
// after it.
func (l *Limiter) AcquireBehind(ctx context.Context) (*Permit, error) {
	return l.acquireWith(ctx, false, true, 0, true)
}

// AcquireAhead is AcquireWithin for a call prepared ahead of its place
// (TryAcquireAhead): it waits, for twice the lead at most, for a place
// that frees within lead, and takes it ahead once it frees within ahead.
// nil: no permit within the lead (or ctx ended).
func (l *Limiter) AcquireAhead(ctx context.Context, lead, ahead time.Duration) *Permit {
	return l.acquireAhead(ctx, lead, ahead, false)
}

// AcquireAheadBehind is AcquireAhead for a call that waits behind (a bulk
// request just fetched): it takes no place a caller in AcquireBehind
// waits for either, so that a bulk request waiting for its permit (a
// retry) is not passed over by every bulk request fetched after it for as
// long as the campaign lasts. A caller in Acquire still comes first.
func (l *Limiter) AcquireAheadBehind(ctx context.Context, lead, ahead time.Duration) *Permit {
	return l.acquireAhead(ctx, lead, ahead, true)
}

func (l *Limiter) acquireAhead(ctx context.Context, lead, ahead time.Duration, behind bool) *Permit {
	clock := l.tenant.clock
	p, wait := l.tryAcquireAhead(clock.Now(), ahead, behind)
	if p != nil || wait == 0 || wait > lead {
		return p
	}
	actx, cancel := clockwork.WithTimeout(ctx, clock, 2*lead)
	defer cancel()
	if p, _ = l.acquireWith(actx, false, true, ahead, behind); p == nil && ctx.Err() == nil {
		p, _ = l.tryAcquireAhead(clock.Now(), ahead, behind)
	}
	return p
}

// AcquireLow is Acquire for work that must never take quota from the rest:
// it starts a call only while half of every window stays free.
func (l *Limiter) AcquireLow(ctx context.Context) (*Permit, error) {
	return l.acquire(ctx, true, true, 0)
}

// Wait blocks until a call could start, without taking a permit: for a
// caller that should not commit to work before there is quota for it, and
// must not hold quota meanwhile. Someone else may take the place first.
func (l *Limiter) Wait(ctx context.Context) error { return l.WaitWithin(ctx, 0) }

// AcquireWithin takes a permit at once, or waits for one when a place
// frees within lead, for twice the lead at most: a place that goes
// elsewhere, or a pause, ends the wait. nil: no permit within the lead
// (or ctx ended); the caller waits for one its own way.
// With behind, it waits as AcquireBehind does.
func (l *Limiter) AcquireWithin(ctx context.Context, lead time.Duration, behind bool) *Permit {
	clock := l.tenant.clock
	p, wait := l.tryAcquireAhead(clock.Now(), 0, behind)
	if p != nil || wait == 0 || wait > lead {
		return p
	}
	actx, cancel := clockwork.WithTimeout(ctx, clock, 2*lead)
	defer cancel()
	if p, _ = l.acquireWith(actx, false, true, 0, behind); p == nil && ctx.Err() == nil {
		// The bound and the place may have come together (a stalled
		// caller): look once more, so that no one else takes it.
		p, _ = l.tryAcquireAhead(clock.Now(), 0, behind)
	}
	return p
}

// WaitWithin is Wait for a caller that prepares its call lead ahead: it
// returns once a call could start within lead. The call itself still
// waits for its permit.
func (l *Limiter) WaitWithin(ctx context.Context, lead time.Duration) error {
	_, err := l.acquire(ctx, false, false, lead)
	return err
}

// acquire waits until a call may start and, if take, takes its permit.
// Without take, it returns lead before a call may start.
func (l *Limiter) acquire(ctx context.Context, low, take bool, lead time.Duration) (*Permit, error) {
	if take {
		lead = 0 // a permit is handed out early only with its NotBefore (AcquireAhead)
	}
	return l.acquireWith(ctx, low, take, lead, false)
}

// acquireWith waits until a call may start within ahead of now and, if
// take, takes its permit: for a place not free yet, with its NotBefore.
// behind: the caller waits behind (AcquireBehind, AcquireAheadBehind):
// after every caller in Acquire, and after those in AcquireBehind that
// came before it.
func (l *Limiter) acquireWith(ctx context.Context, low, take bool, ahead time.Duration, behind bool) (*Permit, error) {
	t := l.tenant
	// A caller that waits for a permit at its place is counted while it
	// waits: no permit is taken ahead of that place (the loop's, for a
	// request fetched since), which would leave the waiter, woken as the
	// place frees, without it every time. One that waits behind is
	// counted among those that wait behind.
	waiter, waiting, number := take && ahead == 0 && !low, false, uint64(0)
	queue := &l.waiting
	if behind {
		queue = &l.behind
	}
	defer func() {
		if waiting {
			t.mu.Lock()
			if i, found := slices.BinarySearch(*queue, number); found {
				*queue = slices.Delete(*queue, i, i+1)
			}
			t.notifyLocked() // those that counted its place look again
			t.mu.Unlock()
		}
	}()
	for {
		t.mu.Lock()
		now := t.clock.Now()
		// The places of the waiters that came before it are theirs: a
		// waiter looking again (as anything frees capacity on the
		// tenant) would otherwise take one, the earlier waiter woken as
		// it frees but run after it.
		before := l.waitersBefore(behind)
		if waiting {
			before, _ = slices.BinarySearch(*queue, number)
			if behind {
				before += len(l.waiting)
			}
		}
		next, ok, recheck := l.nextAfterLocked(now, low, before)
		lead := ahead
		if recheck || take && l.waitersBefore(behind) > 0 {
			lead = 0 // a look again is no place, and a waiter's place is no place ahead
		}
		if ok && !next.After(now.Add(lead)) {
			var p *Permit
			if take {
				p = l.takeAtLocked(now, next, low)
			}
			t.mu.Unlock()
			return p, nil
		}
		if waiter && !waiting {
			l.waited++
			number = l.waited
			*queue = append(*queue, number)
			waiting = true
		}
		changed := t.changed
		t.mu.Unlock()
		if err := t.wait(ctx, changed, now, next.Add(-lead), ok); err != nil {
			return nil, err
		}
	}
}

// waitersBefore is how many callers wait for their permits ahead of a
// caller that does not wait yet (a request just fetched, the tenant's
// loop looking how many it may fetch): those in Acquire, and with behind
// (a caller that waits behind) those in AcquireBehind too. The places
// they wait for are theirs, and count as taken: a waiter woken as its
// place frees must still run to take it, and a request that came later
// took it first; the waiter then waited for the next place, for which
// the loop had fetched another request by then, for as long as the
// backlog lasted.
func (l *Limiter) waitersBefore(behind bool) int {
	if behind {
		return len(l.waiting) + len(l.behind)
	}
	return len(l.waiting)
}

// nextAfterLocked is nextLocked for a caller after n waiters in Acquire,
// whose places count as taken.
func (l *Limiter) nextAfterLocked(now time.Time, low bool, n int) (next time.Time, ok, recheck bool) {
	l.held += n
	next, ok, recheck = l.nextLocked(now, low, false)
	l.held -= n
	if ok && !recheck {
		// So are the spreading tokens they wait for (spreadBurst): with
		// room in the windows, the bucket alone sets their places.
		next = l.tokensLocked(now, next, 1+n)
	}
	return next, ok, recheck
}

// wait returns when ctx ends, changed is closed, or (if ok) next comes.
func (t *Tenant) wait(ctx context.Context, changed <-chan struct{}, now, next time.Time, ok bool) error {
	var timeout <-chan time.Time
	if ok {
		timer := t.clock.NewTimer(next.Sub(now))
		defer timer.Stop()
		timeout = timer.Chan()
	}
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-changed:
	case <-timeout:
	}
	return nil
}

// nextLocked returns the earliest time a new call may start. ok is false when
// in-flight calls alone fill a window, so only a completion can help (or,
// with a journal, before this process has read it, and while its clock is
// off by more than the margin). recheck says next is only when to look
// again, not a time a place frees: another replica's call comes due then
// and turns into a stamp, which may leave no room. A low call leaves half
// of every window to the others. For a journal entry (entry), the
// permits held here do not count, since they are not calls: the journal
// alone says what may be called.
func (l *Limiter) nextLocked(now time.Time, low, entry bool) (next time.Time, ok, recheck bool) {
	if len(l.windows) == 0 {
		// A counter without windows (no budget in force) holds nothing,
		// whatever its journal holds or whether it has been read.
		return now, true, false
	}
	t := l.tenant
	if t.shared != nil && !t.shared.mayCall() {
		return time.Time{}, false, false
	}
	l.pruneLocked(now)
	inFlight := l.inFlightLocked(entry)
	next = t.pauseEndLocked(now)
	for _, w := range l.windows {
		free := w.Count - inFlight // calls that may still be placed in this window
		if low {
			free -= w.Count / 2
		}
		if free <= 0 {
			// Another replica's call that comes due turns into a stamp
			// and may make room: look again then. Nothing else would
			// wake the waiters if its process died.
			if due, ok := l.firstForeignDue(); ok {
				return time.Unix(0, due), true, true
			}
			return time.Time{}, false, false
		}
		if len(l.stamps)+len(l.others) < free {
			continue
		}
		// The free-th most recent completion must leave the window first:
		// a window (t-Length, t] then holds at most free-1 of them.
		if at := now.Add(sinceAged(w.Length, l.age(now, free))); at.After(next) {
			next = at
		}
	}
	if !entry { // the permit took its token already
		next = l.tokensLocked(now, next, 1)
	}
	return next, true, false
}

// tokensLocked is next, or later if the spreading bucket holds fewer than
// n tokens by then: when it will have had n.
func (l *Limiter) tokensLocked(now, next time.Time, n int) time.Time {
	if l.spread == nil {
		return next
	}
	if missing := float64(n) - l.spread.TokensAt(now); missing > 0 {
		wait := time.Duration(missing / float64(l.spread.Limit()) * float64(time.Second))
		if at := now.Add(wait + time.Microsecond); at.After(next) {
			next = at
		}
	}
	return next
}

// inFlightLocked counts the calls under way: this process's and the other
// replicas' in the journal, and (unless for a journal entry) the permits
// held here.
func (l *Limiter) inFlightLocked(entry bool) int {
	n := l.reserved + len(l.foreign)
	if !entry {
		n += l.held
	}
	return n
}

// firstForeignDue is the earliest time another replica's call under way is
// due, in Unix ns.
func (l *Limiter) firstForeignDue() (int64, bool) {
	first, ok := int64(0), false
	for _, due := range l.foreign {
		if !ok || due < first {
			first, ok = due, true
		}
	}
	return first, ok
}

func (l *Limiter) pruneLocked(now time.Time) {
	own := l.tenant.since(now)
	l.stamps = dropUpTo(l.stamps, own-int64(l.horizon))
	if s := l.tenant.shared; s != nil && !s.wallRight() {
		// Read by a clock stepped or off, the others' calls would look
		// older than they are: dropped now, they would be missing once
		// the clock is set right. They wait for a clock measured right;
		// beyond the largest count of them, the oldest never matter,
		// whatever the clock. So do their calls under way: found overdue
		// by a clock stepped forward, and the note that they were
		// counted from their due time dropped as old, their ends would
		// count them a second time.
		if n := len(l.others) - l.keep; n > 0 {
			l.others = slices.Delete(l.others, 0, n)
		}
		return
	}
	// Another replica's call whose answer is overdue counts from the time
	// it was due: its process has died, or its answer will never come.
	wall := now.UnixNano()
	for k, due := range l.foreign {
		if due <= wall {
			delete(l.foreign, k)
			l.expired[k] = due
			l.others = insertSorted(l.others, due)
		}
	}
	oldest := wall - int64(l.horizon)
	for k, due := range l.expired {
		if due <= oldest {
			delete(l.expired, k)
		}
	}
	l.others = dropUpTo(l.others, oldest)
	// Beyond the largest count, the oldest never matter.
	for n := len(l.stamps) + len(l.others) - l.keep; n > 0; n-- {
		if len(l.others) == 0 || len(l.stamps) > 0 && own-l.stamps[0] > wall-l.others[0] {
			l.stamps = l.stamps[1:]
		} else {
			l.others = l.others[1:]
		}
	}
}

// Remaining reports, for each window in order, how many calls could still
// start now if nothing completed.
func (l *Limiter) Remaining(now time.Time) []int {
	t := l.tenant
	t.mu.Lock()
	defer t.mu.Unlock()
	l.pruneLocked(now)
	out := make([]int, len(l.windows))
	for i, w := range l.windows {
		out[i] = max(w.Count-l.usedLocked(now, w), 0)
	}
	return out
}

// usedLocked counts the calls under way and those made within window w
// before now.
func (l *Limiter) usedLocked(now time.Time, w Window) int {
	return l.inFlightLocked(false) + countAfter(l.stamps, l.tenant.since(now)-int64(w.Length)) +
		countAfter(l.others, now.UnixNano()-int64(w.Length))
}

// Overdrawn says whether a window counts more calls under way and made
// than it allows: its count was lowered (SetWindows) after permits were
// handed out. Holders of permits that have not called yet should give
// them back until it is not.
func (l *Limiter) Overdrawn(now time.Time) bool {
	t := l.tenant
	t.mu.Lock()
	defer t.mu.Unlock()
	l.pruneLocked(now)
	for _, w := range l.windows {
		if l.usedLocked(now, w) > w.Count {
			return true
		}
	}
	return false
}

// Permit is one call's place in the windows. Exactly one of Complete and
// Release must be called; later calls are ignored. With a journal, Record
// must come before the call is sent.
type Permit struct {
	l    *Limiter
	low  bool
	once sync.Once
	// notBefore is when its place frees, for a permit handed out ahead
	// of it (TryAcquireAhead): its call must not be sent earlier. Zero:
	// at once.
	notBefore time.Time

	// Set by Record.
	id  uint64
	due time.Time
	gen uint64 // the steps of the wall clock seen when it was entered
}

// Complete places the call in the windows at the given time, which must be
// when its answer arrived (or when the attempt was given up, if it may have
// reached the server).
func (p *Permit) Complete(at time.Time) {
	p.once.Do(func() {
		l := p.l
		l.tenant.mu.Lock()
		defer l.tenant.mu.Unlock()
		l.insertLocked(at)
		p.endLocked(at.UnixNano())
	})
}

func (l *Limiter) insertLocked(at time.Time) {
	l.stamps = insertSorted(l.stamps, l.tenant.since(at))
}

// since is at's place on the tenant's timeline for this process's calls:
// nanoseconds since its base. With the clock's monotonic reading in both
// (a real clock), a step of the wall clock does not move it: a clock
// stepped forward ages no call of this process out of a window early.
func (t *Tenant) since(at time.Time) int64 { return int64(at.Sub(t.base)) }

// age is how long ago the k-th most recent completion was, this
// process's (by the monotonic clock) and the others' (by the wall clock)
// together. There are at least k.
func (l *Limiter) age(now time.Time, k int) time.Duration {
	own, wall := l.tenant.since(now), now.UnixNano()
	switch { // one replica's alone: no merge
	case len(l.others) == 0:
		return time.Duration(own - l.stamps[len(l.stamps)-k])
	case len(l.stamps) == 0:
		return time.Duration(wall - l.others[len(l.others)-k])
	}
	i, j := len(l.stamps)-1, len(l.others)-1
	var a int64
	for range k {
		if j < 0 || i >= 0 && own-l.stamps[i] <= wall-l.others[j] {
			a, i = own-l.stamps[i], i-1
		} else {
			a, j = wall-l.others[j], j-1
		}
	}
	return time.Duration(a)
}

// sinceAged is how long after now a completion age ago leaves a window
// of the given length: length-age, or the longest Duration if that is
// more. A completion in the future (another replica's, read with the
// margin or dated ahead) has a negative age, and with a window near the
// longest Duration the difference would wrap round to a time past.
func sinceAged(length, age time.Duration) time.Duration {
	if age < 0 && length > math.MaxInt64+age {
		return math.MaxInt64
	}
	return length - age
}

// insertSorted adds v to the ascending s, after any equal to it.
func insertSorted(s []int64, v int64) []int64 {
	return slices.Insert(s, firstAfter(s, v), v)
}

// dropUpTo removes from the ascending s what is at or before v.
func dropUpTo(s []int64, v int64) []int64 {
	if cut := firstAfter(s, v); cut > 0 {
		return slices.Delete(s, 0, cut)
	}
	return s
}

// countAfter counts what in the ascending s is after v.
func countAfter(s []int64, v int64) int { return len(s) - firstAfter(s, v) }

// firstAfter is the index of the first of the ascending s after v (len(s)
// if none). Not a search for v+1: at the latest time an int64 holds (an
// end capped there) that wraps round to the earliest, and v would go
// first.
func firstAfter(s []int64, v int64) int {
	i, _ := slices.BinarySearchFunc(s, v, func(e, v int64) int {
		if e <= v {
			return -1
		}
		return 1
	})
	return i
}

// NotBefore is when the permit's call may be sent: its place frees then.
// Zero, or a time past, for a permit whose place was free when it was
// handed out.
func (p *Permit) NotBefore() time.Time { return p.notBefore }

// Due is when the call's answer is due at the latest, as Record or
// TryRecord entered it in the journal: other processes count the call as
// ended then, and ignore an end written later, so the call must be over
// by then. Zero before it is entered, and without a journal.
func (p *Permit) Due() time.Time { return p.due }

// CompleteNow is Complete at the limiter clock's current time.
func (p *Permit) CompleteNow() { p.Complete(p.l.tenant.clock.Now()) }

// Release gives the permit back for a call that was never sent.
func (p *Permit) Release() {
	p.once.Do(func() {
		p.l.tenant.mu.Lock()
		defer p.l.tenant.mu.Unlock()
		p.endLocked(0)
	})
}

// endLocked takes the permit out of the calls under way; a call in the
// journal gets its end written there (at 0: it was never sent).
func (p *Permit) endLocked(at int64) {
	l, t := p.l, p.l.tenant
	if p.id == 0 {
		l.held--
	} else {
		l.reserved--
		t.pending.Done = append(t.pending.Done, Call{API: l.api, ID: p.id, At: at, answered: at, due: p.due.UnixNano(), gen: p.gen})
		t.wakeWriterLocked()
	}
	t.notifyLocked()
}

// AddCounter creates a limiter whose windows change while it runs
// (SetWindows): a budget. It keeps every stamp of the last horizon,
// whatever its windows, so that a longer window set later still sees
// them. Without windows it never holds a call.
func (t *Tenant) AddCounter(api string, horizon time.Duration) *Limiter {
	t.mu.Lock()
	defer t.mu.Unlock()
	l := &Limiter{tenant: t, api: api, keep: math.MaxInt, horizon: horizon, foreign: map[callKey]int64{}, expired: map[callKey]int64{}}
	t.apis[api] = l
	return l
}

// SetWindows replaces the limiter's windows (an AddCounter limiter's), and
// wakes whoever waits for it: a higher limit lets them go at once. A
// window longer than the limiter's horizon is cut to it.
func (l *Limiter) SetWindows(ws []Window) {
	t := l.tenant
	t.mu.Lock()
	defer t.mu.Unlock()
	l.windows = slices.Clone(ws)
	for i := range l.windows {
		l.windows[i].Length = min(l.windows[i].Length, l.horizon)
	}
	t.notifyLocked()
}
