package limiter

import (
	"context"
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

	mu          sync.Mutex
	pausedUntil time.Time
	changed     chan struct{} // closed and replaced whenever capacity may have grown
	apis        map[string]*Limiter
}

// NewTenant returns an empty set of limiters that reads time from clock.
func NewTenant(clock clockwork.Clock) *Tenant {
	return &Tenant{clock: clock, changed: make(chan struct{}), apis: make(map[string]*Limiter)}
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
	l := &Limiter{tenant: t, api: api, windows: slices.Clone(windows)}
	for _, w := range windows {
		l.keep = max(l.keep, w.Count)
		l.horizon = max(l.horizon, w.Length)
	}
	if burst > 0 {
		// The shortest window sets the pace.
		short := windows[0]
		for _, w := range windows {
			if w.Length < short.Length {
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
func (t *Tenant) Pause(now time.Time, d time.Duration) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if until := now.Add(d); until.After(t.pausedUntil) {
		t.pausedUntil = until
	}
	t.notifyLocked() // waiters recompute their deadline
}

// PausedUntil reports the end of the current pause (zero if never paused).
func (t *Tenant) PausedUntil() time.Time {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.pausedUntil
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
	stamps   []time.Time // completion times of recent calls, ascending
	inFlight int         // calls sent whose answer has not arrived
	spread   *rate.Limiter
}

// Windows returns the limiter's windows.
func (l *Limiter) Windows() []Window { return slices.Clone(l.windows) }

// TryAcquire takes a permit if a call may start at now. Otherwise it returns
// nil and how long to wait before asking again; a wait of zero with a nil
// permit means capacity comes back only when an in-flight call completes.
func (l *Limiter) TryAcquire(now time.Time) (*Permit, time.Duration) {
	t := l.tenant
	t.mu.Lock()
	defer t.mu.Unlock()
	next, ok := l.nextLocked(now, false)
	if !ok {
		return nil, 0
	}
	if next.After(now) {
		return nil, next.Sub(now)
	}
	l.takeLocked(now)
	return &Permit{l: l}, 0
}

func (l *Limiter) takeLocked(now time.Time) {
	l.inFlight++
	if l.spread != nil {
		l.spread.AllowN(now, 1)
	}
}

// Acquire blocks until a call may start, then returns its permit.
func (l *Limiter) Acquire(ctx context.Context) (*Permit, error) { return l.acquire(ctx, false) }

// AcquireLow is Acquire for work that must never take quota from the rest:
// it starts a call only while half of every window stays free.
func (l *Limiter) AcquireLow(ctx context.Context) (*Permit, error) { return l.acquire(ctx, true) }

func (l *Limiter) acquire(ctx context.Context, low bool) (*Permit, error) {
	t := l.tenant
	for {
		t.mu.Lock()
		now := t.clock.Now()
		next, ok := l.nextLocked(now, low)
		if ok && !next.After(now) {
			l.takeLocked(now)
			t.mu.Unlock()
			return &Permit{l: l}, nil
		}
		changed := t.changed
		t.mu.Unlock()

		var timer clockwork.Timer
		var timeout <-chan time.Time
		if ok {
			timer = t.clock.NewTimer(next.Sub(now))
			timeout = timer.Chan()
		}
		var err error
		select {
		case <-ctx.Done():
			err = ctx.Err()
		case <-changed:
		case <-timeout:
		}
		if timer != nil {
			timer.Stop()
		}
		if err != nil {
			return nil, err
		}
	}
}

// nextLocked returns the earliest time a new call may start. ok is false when
// in-flight calls alone fill a window, so only a completion can help. A low
// call leaves half of every window to the others.
func (l *Limiter) nextLocked(now time.Time, low bool) (next time.Time, ok bool) {
	l.pruneLocked(now)
	next = l.tenant.pausedUntil
	for _, w := range l.windows {
		free := w.Count - l.inFlight // calls that may still be placed in this window
		if low {
			free -= w.Count / 2
		}
		if free <= 0 {
			return time.Time{}, false
		}
		if len(l.stamps) < free {
			continue
		}
		// The free-th most recent completion must leave the window first:
		// a window (t-Length, t] then holds at most free-1 of them.
		if at := l.stamps[len(l.stamps)-free].Add(w.Length); at.After(next) {
			next = at
		}
	}
	if l.spread != nil {
		if missing := 1 - l.spread.TokensAt(now); missing > 0 {
			wait := time.Duration(missing / float64(l.spread.Limit()) * float64(time.Second))
			if at := now.Add(wait + time.Microsecond); at.After(next) {
				next = at
			}
		}
	}
	return next, true
}

func (l *Limiter) pruneLocked(now time.Time) {
	cut := 0
	for cut < len(l.stamps) && !l.stamps[cut].After(now.Add(-l.horizon)) {
		cut++
	}
	if extra := len(l.stamps) - cut - l.keep; extra > 0 {
		cut += extra
	}
	if cut > 0 {
		l.stamps = slices.Delete(l.stamps, 0, cut)
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
		used := l.inFlight
		for _, s := range l.stamps {
			if s.After(now.Add(-w.Length)) {
				used++
			}
		}
		out[i] = max(w.Count-used, 0)
	}
	return out
}

// Permit is one call's place in the windows. Exactly one of Complete and
// Release must be called; later calls are ignored.
type Permit struct {
	l    *Limiter
	once sync.Once
}

// Complete places the call in the windows at the given time, which must be
// when its answer arrived (or when the attempt was given up, if it may have
// reached the server).
func (p *Permit) Complete(at time.Time) {
	p.once.Do(func() {
		l := p.l
		l.tenant.mu.Lock()
		defer l.tenant.mu.Unlock()
		l.inFlight--
		i, _ := slices.BinarySearchFunc(l.stamps, at, time.Time.Compare)
		l.stamps = slices.Insert(l.stamps, i, at)
		l.tenant.notifyLocked()
	})
}

// CompleteNow is Complete at the limiter clock's current time.
func (p *Permit) CompleteNow() { p.Complete(p.l.tenant.clock.Now()) }

// Release gives the permit back for a call that was never sent.
func (p *Permit) Release() {
	p.once.Do(func() {
		l := p.l
		l.tenant.mu.Lock()
		defer l.tenant.mu.Unlock()
		l.inFlight--
		l.tenant.notifyLocked()
	})
}
