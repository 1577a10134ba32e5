package limiter

import (
	"context"
	crand "crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"hash/fnv"
	"math"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/jonboulle/clockwork"
)

// Event is one entry of a tenant's quota journal. The journal is what
// every replica of the worker, and every restart, knows of the tenant's
// calls: a call is entered before it is sent, its end once its answer has
// arrived, and a 429's pause as soon as it is known.
type Event struct {
	Writer   string `json:"w"`               // the process that wrote it
	Reserved []Call `json:"res,omitempty"`   // calls about to be sent; At is when their answer is due at the latest
	Done     []Call `json:"done,omitempty"`  // calls that ended: At is when their answer arrived, 0 if never sent
	Paused   int64  `json:"pause,omitempty"` // the tenant is paused until then (Unix ns)
	// Written is when the writer wrote the entry, by its own clock (Unix
	// ns): with the server's timestamp of the entry, the writer learns
	// how far ahead its clock may be.
	Written int64 `json:"t,omitempty"`
	// Gen is how many steps of its wall clock the writer had seen when it
	// wrote the entry (clock.go): an entry written before its last step
	// does not measure its clock after it.
	Gen uint64 `json:"g,omitempty"`
}

// Call is a call in an Event.
type Call struct {
	API string `json:"api"`
	ID  uint64 `json:"id"`
	At  int64  `json:"at"` // Unix ns
	// For an end of this process's not written yet: when its answer
	// came, by this process's clock (At is written from it); its call's
	// due time (Unix ns) and the steps of the wall clock seen when the
	// call was entered (Event.Gen); lost says the call's entry may not
	// be in the journal (its answer was lost) and the call was never
	// sent.
	answered int64
	due      int64
	gen      uint64
	lost     bool
}

func (e *Event) empty() bool { return len(e.Reserved) == 0 && len(e.Done) == 0 && e.Paused == 0 }

// Journal stores the quota events of every tenant, in one order per
// tenant that all replicas see.
type Journal interface {
	// Append adds ev to the tenant's journal if the tenant's last entry
	// is still the one numbered last (0: none), and returns the new
	// entry's number. If another entry came first, it returns a
	// *ConflictError; an error that wraps ErrNotStored says it did not
	// store ev.
	Append(ctx context.Context, tenant string, ev Event, last uint64) (uint64, error)
}

// ErrNotStored marks an error of Append that is the journal's answer that
// it did not store the entry (it refused it for a limit, say), unlike no
// answer at all, after which the entry may have been stored.
var ErrNotStored = errors.New("entry not stored")

// ConflictError is Append's answer when the journal moved on: Last is the
// number of the tenant's newest entry.
type ConflictError struct{ Last uint64 }

func (e *ConflictError) Error() string {
	return fmt.Sprintf("quota journal: another entry came first (last is %d)", e.Last)
}

// MaxLease bounds every process's call lease: other processes count a
// call entered in the journal as under way until its due time, but never
// longer than this after they read it.
const MaxLease = time.Hour

// MaxPause is the longest pause a 429 sets (the API client keeps a
// Retry-After up to an hour): other processes cut a pause in the journal
// to it, or to the tenant's longest window if that is longer.
const MaxPause = time.Hour

// SharedOptions configure a Shared.
type SharedOptions struct {
	Journal Journal
	Clock   clockwork.Clock
	// Margin is added to every time another process wrote (a call's end,
	// the time an answer is due, a pause): it covers the skew between
	// the replicas' clocks. This process's own times are exact. A process
	// whose clock is off the journal server's by more than half the
	// margin makes no call (ObserveStamp).
	Margin time.Duration
	// Lease is how long a call may take from its entry in the journal to
	// its answer. A call whose end is not written by then (its process
	// died) counts as ended at that time. It must be at least the API
	// client's timeout. Other processes count this process's calls up to
	// their due time, but no further ahead than MaxLease or their own
	// lease, whichever is longer.
	Lease time.Duration
	// Writer names this process in the journal; empty picks a random one.
	Writer string
	// Wall is the clock compared with the journal server's timestamps:
	// the feed's start, waits for the server. Nil: Clock. Tests whose
	// Clock is fake while the server runs on real time set a real one.
	Wall clockwork.Clock
	// Metrics, when set, count what happens to the journal.
	Metrics *JournalMetrics
	// Name names the journal in errors (default "quota journal"): they
	// tell an operator which stream to look at.
	Name string
	// EndsLinger is how long the ends of calls wait to be written with
	// more (default DefaultEndsLinger); a pause is written at once.
	EndsLinger time.Duration
	// Seed seeds the jitter of the journal writes' backoff; 0 derives it
	// from Writer.
	Seed uint64
}

// Shared is the quota every replica of the worker shares: each tenant's
// calls are entered in a Journal before they are sent, each entry
// expecting to follow the tenant's last one (compare-and-swap), so no two
// replicas can both take the last free place of a window.
//
// A feed from the journal (Deliver, MarkCaughtUp) keeps this process's view of
// the others' calls current. Until it has caught up, no call may start: a restarted
// process first reads the calls of the last hour.
type Shared struct {
	opts SharedOptions

	mu    sync.Mutex
	ready bool
	// held says the feed was cut off and the journal not found the same
	// since (Hold): no call starts. holds counts the Holds: a look at the
	// journal begun before the last one does not end it (Resume).
	// remade, once set, refuses every journal write: the journal was
	// deleted or made anew under this process.
	held   bool
	holds  uint64
	remade error
	pos    uint64 // the journal entry the feed is at
	// from is the first entry the feed brought, or the one after the
	// journal's end if it caught up before bringing any: it brings every
	// entry from there on.
	from    uint64
	moved   chan struct{}
	tenants map[string]*Tenant
	skew    offset // this process's clock against the journal server's
	// The wall clock's steps (clock.go): the last reading looked at, and
	// while the last step has not been measured against the server's
	// clock yet, its size (0 once measured).
	looked time.Time
	stepBy time.Duration
	// drift is, while a step is not measured, the offset last measured
	// before it plus the steps seen since: where the clock is against
	// the server's, as far as is known (behind).
	drift time.Duration
	steps uint64        // the steps seen (Event.Gen)
	probe chan struct{} // asks the feed for a probe (ProbeNow)

	// stopped ends when Close starts: the writers' context.
	stopped context.Context
	stop    context.CancelFunc
	writers sync.WaitGroup
	startMu sync.Mutex // orders startWriter before Close's wait
	closed  bool       // Close has begun: no writer starts (startMu)

	metrics *JournalMetrics

	rmu sync.Mutex
	rnd *rand.Rand // backoff jitter, guarded by rmu
}

// NewShared returns a shared quota over opts.Journal. Tenant creates its
// tenants; Close stops their journal writers.
func NewShared(opts SharedOptions) *Shared {
	if opts.Clock == nil {
		opts.Clock = clockwork.NewRealClock()
	}
	if opts.EndsLinger <= 0 {
		opts.EndsLinger = DefaultEndsLinger
	}
	if opts.Wall == nil {
		opts.Wall = opts.Clock
	}
	if opts.Name == "" {
		opts.Name = "quota journal"
	}
	if opts.Writer == "" {
		b := make([]byte, 6)
		_, _ = crand.Read(b)
		opts.Writer = hex.EncodeToString(b)
	}
	metrics := opts.Metrics
	if metrics == nil {
		metrics = NewJournalMetrics(nil)
	}
	if opts.Seed == 0 {
		h := fnv.New64a()
		_, _ = h.Write([]byte(opts.Writer))
		opts.Seed = h.Sum64()
	}
	stopped, stop := context.WithCancel(context.Background())
	return &Shared{
		opts: opts, moved: make(chan struct{}), tenants: map[string]*Tenant{}, stopped: stopped, stop: stop,
		probe:   make(chan struct{}, 1),
		metrics: metrics, rnd: rand.New(rand.NewPCG(opts.Seed, opts.Seed>>1|1)),
	}
}

// Wall is the clock this process compares with the journal server's
// timestamps (SharedOptions.Wall).
func (s *Shared) Wall() clockwork.Clock { return s.opts.Wall }

// backoff is the wait before a failed journal write is tried again: it
// grows with the attempts up to 5s, jittered by ±25% so that replicas that
// lost the journal together do not come back in step.
func (s *Shared) backoff(attempt int) time.Duration {
	base := min(time.Duration(attempt+1)*100*time.Millisecond, 5*time.Second)
	s.rmu.Lock()
	f := 0.75 + s.rnd.Float64()/2
	s.rmu.Unlock()
	return time.Duration(float64(base) * f)
}

// Writer is this process's name in the journal.
func (s *Shared) Writer() string { return s.opts.Writer }

// Lease is this process's call lease (SharedOptions.Lease).
func (s *Shared) Lease() time.Duration { return s.opts.Lease }

// Tenant returns the limiters of a tenant whose calls go through the
// journal.
func (s *Shared) Tenant(name string) *Tenant {
	s.mu.Lock()
	defer s.mu.Unlock()
	if t := s.tenants[name]; t != nil {
		return t
	}
	t := NewTenant(s.opts.Clock)
	t.name, t.shared, t.flush = name, s, make(chan struct{}, 1)
	s.tenants[name] = t
	return t
}

// startWriter runs write in a goroutine that Close waits for, unless
// Close has begun; it says whether it did.
func (s *Shared) startWriter(write func(context.Context)) bool {
	s.startMu.Lock()
	defer s.startMu.Unlock()
	if s.closed {
		return false
	}
	s.writers.Go(func() { write(s.stopped) })
	return true
}

// CaughtUp reports whether the feed has read the journal as it was when
// it started.
func (s *Shared) CaughtUp() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.ready
}

// WaitCaughtUp returns once the feed has caught up, or when ctx ends.
func (s *Shared) WaitCaughtUp(ctx context.Context) error {
	for {
		s.mu.Lock()
		ready, moved := s.ready, s.moved
		s.mu.Unlock()
		if ready {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-moved:
		}
	}
}

// MarkCaughtUp says the feed has delivered every entry up to pos, which is
// at least the journal's end as it was when the feed started: calls may
// start.
func (s *Shared) MarkCaughtUp(pos uint64) {
	s.mu.Lock()
	s.ready = true
	if s.remade == nil {
		s.metrics.caughtUp.Set(1)
	}
	if s.from == 0 {
		s.from = pos + 1
	}
	if !s.advanceLocked(pos) {
		s.signalLocked() // WaitCaughtUp
	}
	tenants := s.tenantsLocked()
	s.mu.Unlock()
	wake(tenants)
}

func (s *Shared) tenantsLocked() []*Tenant {
	tenants := make([]*Tenant, 0, len(s.tenants))
	for _, t := range s.tenants {
		tenants = append(tenants, t)
	}
	return tenants
}

// wake wakes the tenants' waiters: calls may start.
func wake(tenants []*Tenant) {
	for _, t := range tenants {
		t.mu.Lock()
		t.notifyLocked()
		t.mu.Unlock()
	}
}

// advanceLocked moves the feed's position on, and reports whether it
// moved.
func (s *Shared) advanceLocked(pos uint64) bool {
	if pos <= s.pos {
		return false
	}
	s.pos = pos
	s.signalLocked()
	return true
}

// signalLocked wakes whoever waits for the feed.
func (s *Shared) signalLocked() {
	close(s.moved)
	s.moved = make(chan struct{})
}

// Deliver applies the journal entry numbered seq of a tenant. The feed
// calls it in journal order; entries of tenants this process does not
// serve only move the feed on.
func (s *Shared) Deliver(seq uint64, tenant string, ev Event) {
	s.deliver(seq, tenant, func(t *Tenant) { t.apply(seq, ev) })
}

// deliver applies the entry numbered seq to the tenant's view, if this
// process serves it, and moves the feed on.
func (s *Shared) deliver(seq uint64, tenant string, apply func(*Tenant)) {
	s.mu.Lock()
	t := s.tenants[tenant]
	s.mu.Unlock()
	if t != nil {
		apply(t)
	}
	s.mu.Lock()
	if s.from == 0 {
		s.from = seq
	}
	s.advanceLocked(seq)
	s.mu.Unlock()
}

// DeliverUnreadable stands for an entry of the tenant that could not be
// read (written by an incompatible version): it may have entered calls,
// which the API may count as late as their due time, a lease on, and
// keeps in its windows for their length after that. So the tenant is
// paused until a call counted then has left its longest window in force
// (a budget's, not the longer horizon its counter keeps), with the
// margin: a pause of a lease alone let the next call be one too many in
// the window.
//
// The pause counts from stored, when the server stored the entry: read
// back at a restart, an entry whose calls have left every window holds
// nothing.
func (s *Shared) DeliverUnreadable(seq uint64, tenant string, stored time.Time) {
	s.deliver(seq, tenant, func(t *Tenant) { t.applyUnreadable(seq, stored) })
}

// applyUnreadable is apply for an entry that could not be read.
func (t *Tenant) applyUnreadable(seq uint64, stored time.Time) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if seq <= t.lastSeq {
		return
	}
	t.lastSeq = seq
	o := t.shared.opts
	// A stamp ahead of this process's clock (the server's clock was
	// ahead when it stored the entry, and set right since) counts from
	// now: it cannot hold the tenant longer than an entry stored as it
	// is read. Now by the server's time, where this clock is found
	// behind it or ahead (as apply's caps).
	now := t.clock.Now().Add(t.shared.toServer()).UnixNano()
	at := min(stored.UnixNano(), now)
	until := addNanos(at, o.Lease, t.longestInForceLocked(), o.Margin)
	if until > now {
		t.shared.metrics.unreadable.Inc() // it holds the tenant
	}
	if until > t.journalPause {
		t.journalPause = until
	}
	t.notifyLocked()
}

// feedFrom is the first entry the feed brings every entry from (0: none
// yet).
func (s *Shared) feedFrom() uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.from
}

// feedAt is the last journal entry the feed has delivered.
func (s *Shared) feedAt() uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.pos
}

// waitFeed reports whether the feed has delivered entry pos, waiting for
// it at most d.
func (s *Shared) waitFeed(ctx context.Context, pos uint64, d time.Duration) (bool, error) {
	timer := s.opts.Wall.NewTimer(d) // this waits for the server, not for the quota
	defer timer.Stop()
	for {
		s.mu.Lock()
		at, moved := s.pos, s.moved
		s.mu.Unlock()
		if at >= pos {
			return true, nil
		}
		select {
		case <-ctx.Done():
			return false, ctx.Err()
		case <-timer.Chan():
			return false, nil
		case <-moved:
		}
	}
}

// Close writes what is pending (within ctx) and stops the writers. It
// returns when ctx ends even if a write is still under way: a writer may
// wait for the tenant's write lock, which a call's entry holds as long as
// its own context lets it; what is not written ends at its lease.
func (s *Shared) Close(ctx context.Context) {
	s.mu.Lock()
	tenants := s.tenantsLocked()
	s.mu.Unlock()
	// The writers stop first: one that cannot follow the feed must not
	// keep the last writes waiting.
	s.startMu.Lock()
	s.closed = true
	s.startMu.Unlock()
	s.stop()
	done := make(chan struct{})
	go func() {
		defer close(done)
		s.writers.Wait()
		for _, t := range tenants {
			_ = t.writeOnce(ctx) // best effort: what is not written ends at its lease
		}
	}()
	select {
	case <-done:
	case <-ctx.Done():
	}
}

// Hold stops calls from starting until Resume: the feed was cut off (its
// consumer deleted), and the journal may have been deleted and made anew
// meanwhile. A journal made anew numbers its
// entries again, under numbers the feed has read past and never brings;
// a tenant's entries there may end at the very number of the last one
// this process saw, which its next entry then follows as if it had read
// them.
func (s *Shared) Hold() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.holds++
	if !s.held {
		s.held = true
		s.signalLocked()
	}
}

// Holds is the number of Holds so far, to read before the journal is
// looked at: that look answers for them, and for none made later.
func (s *Shared) Holds() uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.holds
}

// Resume lets calls start again after Hold, with the answer of a look at
// the journal begun when Holds was holds. A Hold made since keeps calls
// held: the cut that made it may have come after the journal answered
// (it was deleted and made anew during the look), and only a look begun
// after it answers for it. remade, when not nil, says the journal was
// deleted, or made anew: no call of any tenant goes out from this
// process until it starts again and reads the journal as it is (its
// writes fail with ErrJournalEntryGone).
func (s *Shared) Resume(holds uint64, remade error) {
	s.mu.Lock()
	if s.holds == holds {
		s.held = false
	}
	if remade != nil && s.remade == nil {
		s.remade = fmt.Errorf("%s: %w (%w): restart the worker", s.opts.Name, ErrJournalEntryGone, remade)
		s.metrics.failures.Inc()
		// The journal as it is now was never read: no call goes out until
		// a restart reads it. The process stands aside and writes
		// nothing more, so the failure above is counted once; caught up
		// 0 keeps saying the journal cannot be used, as before it was
		// first read (MdeOffboardQuotaJournalUnavailable).
		s.metrics.caughtUp.Set(0)
	}
	s.signalLocked()
	tenants := s.tenantsLocked()
	s.mu.Unlock()
	wake(tenants)
}

// Remade says whether the journal was found deleted or made anew under
// this process (Resume): no call of any tenant goes out from it until it
// is restarted.
func (s *Shared) Remade() bool { return s.remadeErr() != nil }

// remadeErr is Resume's error once the journal was found made anew, or
// nil.
func (s *Shared) remadeErr() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.remade
}

// apply adds another process's entry to this view. Entries this process
// wrote are already applied.
func (t *Tenant) apply(seq uint64, ev Event) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if seq <= t.lastSeq {
		return
	}
	t.lastSeq = seq
	if ev.Writer == t.shared.opts.Writer {
		// This process's own entry, counted when it was written. Its
		// write has not seen it stored: if its answer was lost, its
		// ends are pending again, and written twice the other replicas
		// would count each call twice.
		for _, c := range ev.Done {
			if t.stored == nil {
				t.stored = map[uint64]struct{}{}
			}
			t.stored[c.ID] = struct{}{}
		}
		return
	}
	// Times from the journal are capped: an entry written by anyone but
	// the worker, or by a process whose clock is far ahead, must not hold
	// a call longer than any lease (MaxLease), nor pause the tenant
	// longer than a 429 can (MaxPause) or its longest window. Not this
	// process's lease: the
	// writer's may be longer (its --call-timeout raised in a rolling
	// update), and its call may reach the API until its own due time.
	// The caps count from the server's time, not from a clock of this
	// process's found behind it (hours behind at a start, set right
	// later): from there, they cut the calls and pauses of a moment ago
	// to hours ago, gone once the clock is right. Nor from one found
	// ahead of it: from there, they let an entry dated hours ahead hold
	// the tenant for hours more than an hour.
	margin, now := t.shared.opts.Margin, t.clock.Now().Add(t.shared.toServer())
	dueCap := now.Add(max(t.shared.opts.Lease, MaxLease) + margin)
	for _, c := range ev.Reserved {
		if l := t.apis[c.API]; l != nil {
			l.foreign[callKey{ev.Writer, c.ID}] = earliest(time.Unix(0, c.At).Add(margin), dueCap).UnixNano()
		}
	}
	for _, c := range ev.Done {
		l := t.apis[c.API]
		if l == nil {
			continue
		}
		k := callKey{ev.Writer, c.ID}
		if _, ok := l.expired[k]; ok {
			continue // already counted from when it was due
		}
		delete(l.foreign, k)
		if c.At != 0 {
			// An end dated past the longest window (a clock far ahead)
			// counts from there: it cannot hold a place for longer.
			l.others = insertSorted(l.others, min(addNanos(c.At, margin), addNanos(now.UnixNano(), l.horizon, margin)))
		}
	}
	if ev.Paused != 0 {
		pauseCap := addNanos(now.UnixNano(), max(t.longestLocked(), MaxPause), margin)
		if until := min(addNanos(ev.Paused, margin), pauseCap); until > t.journalPause {
			t.journalPause = until
		}
	}
	t.notifyLocked()
}

// longestLocked is the tenant's longest window.
func (t *Tenant) longestLocked() time.Duration {
	var d time.Duration
	for _, l := range t.apis {
		d = max(d, l.horizon)
	}
	return d
}

// longestInForceLocked is the tenant's longest window in force. A budget
// (AddCounter) keeps the stamps of its whole horizon, the longest budget
// its journal can count, whatever budget is in force: what it holds
// counts in the budget in force only.
func (t *Tenant) longestInForceLocked() time.Duration {
	var d time.Duration
	for _, l := range t.apis {
		for _, w := range l.windows {
			d = max(d, w.Length)
		}
	}
	return d
}

// addNanos is the Unix time at plus the durations ds, none negative, or
// the latest an int64 holds if it is later: with a window near the
// longest Duration, a cap of now plus that window and the margin must not
// wrap round to before 1970, which would free the place it holds.
func addNanos(at int64, ds ...time.Duration) int64 {
	for _, d := range ds {
		if at > math.MaxInt64-int64(d) {
			return math.MaxInt64
		}
		at += int64(d)
	}
	return at
}

func earliest(a, b time.Time) time.Time {
	if b.Before(a) {
		return b
	}
	return a
}
