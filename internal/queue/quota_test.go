package queue

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jonboulle/clockwork"
	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/zap"

	"github.com/contoso-secops/mde-offboard/internal/limiter"
	"github.com/contoso-secops/mde-offboard/internal/limiter/steptest"
	"github.com/contoso-secops/mde-offboard/offboard"
)

// quotaCall is one call as the API could see it: counted at any moment
// between sent and answered.
type quotaCall struct {
	sent, answered time.Time
	replica        int
}

// quotaReplica is one worker process's quota: its own view of the journal
// and a few goroutines making calls as fast as it allows.
type quotaReplica struct {
	id     int
	shared *limiter.Shared
	tenant *limiter.Tenant
	cancel context.CancelFunc
	calls  sync.WaitGroup
	follow func()
	killed sync.Once
}

type quotaRig struct {
	t       *testing.T
	js      jetstream.JetStream
	s       Settings
	clock   *clockwork.FakeClock
	windows []limiter.Window
	lease   time.Duration
	margin  time.Duration

	mu    sync.Mutex
	calls []quotaCall
}

func (r *quotaRig) record(c quotaCall) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.calls = append(r.calls, c)
}

// start starts a replica with a fresh view of the journal, as a new process
// would.
func (r *quotaRig) start(id int) *quotaReplica { return r.startSkewed(id, 0) }

// skewedClock is a clock that is off by skew.
type skewedClock struct {
	clockwork.Clock
	skew time.Duration
}

func (c skewedClock) Now() time.Time                  { return c.Clock.Now().Add(c.skew) }
func (c skewedClock) Since(t time.Time) time.Duration { return c.Now().Sub(t) }
func (c skewedClock) Until(t time.Time) time.Duration { return t.Sub(c.Now()) }

// startSkewed starts a replica whose clock is skew ahead of the others
// (behind if negative). The limiter reads the rig's fake clock; the
// server stamps entries with real time, which the replica reads (as Wall)
// off by the same skew.
func (r *quotaRig) startSkewed(id int, skew time.Duration) *quotaReplica {
	r.t.Helper()
	journal, err := NewQuotaJournal(r.t.Context(), r.js, r.s.Subjects)
	if err != nil {
		r.t.Fatal(err)
	}
	clock := skewedClock{r.clock, skew}
	shared := limiter.NewShared(limiter.SharedOptions{
		Journal: journal, Clock: clock, Lease: r.lease, Margin: r.margin,
		Wall: skewedClock{clockwork.NewRealClock(), skew},
	})
	tn := shared.Tenant("contoso")
	l := tn.Add("offboard", r.windows)
	follow, err := FollowQuota(r.t.Context(), r.js, r.s.Subjects, shared, time.Hour, zap.NewNop())
	if err != nil {
		r.t.Fatal(err)
	}
	// No call starts before the feed has read the journal, and the rig's
	// clock does not wait: on a busy machine a replica still reading
	// when the run ended made no call at all.
	waitCtx, waited := context.WithTimeout(r.t.Context(), 10*time.Second) // real time: a bound, not a measure
	defer waited()
	if err := shared.WaitCaughtUp(waitCtx); err != nil {
		r.t.Fatalf("replica %d: the feed never caught up with the journal: %v", id, err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	rp := &quotaReplica{id: id, shared: shared, tenant: tn, cancel: cancel, follow: follow}
	for i := range 3 {
		rp.calls.Go(func() {
			for {
				// One caller of three takes its permits ahead of their
				// places, as the worker's loop does, and sends each call
				// at its NotBefore.
				var p *limiter.Permit
				var err error
				if i == 0 {
					p = l.AcquireAhead(ctx, 40*time.Millisecond, 20*time.Millisecond)
				}
				if p == nil {
					if p, err = l.Acquire(ctx); err != nil {
						return
					}
				}
				due, err := p.Record(ctx)
				if err != nil {
					p.Release()
					return
				}
				if wait := p.NotBefore().Sub(r.clock.Now()); wait > 0 {
					select {
					case <-r.clock.After(wait):
					case <-ctx.Done():
						p.Release()
						return
					}
				}
				sent := r.clock.Now()
				select {
				case <-r.clock.After(time.Duration(rand.IntN(3)) * 20 * time.Millisecond):
				case <-ctx.Done():
					// Killed with the call under way: its answer may come
					// at any time until it is due.
					r.record(quotaCall{sent: sent, answered: due, replica: id})
					return
				}
				answered := r.clock.Now()
				p.Complete(answered.Add(skew))
				r.record(quotaCall{sent: sent, answered: answered, replica: id})
			}
		})
	}
	return rp
}

// kill stops the replica as SIGKILL would: calls under way never end.
func (rp *quotaReplica) kill() { rp.killed.Do(rp.killNow) }

func (rp *quotaReplica) killNow() {
	rp.cancel()
	rp.calls.Wait()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	rp.shared.Close(ctx) // ends of calls that did end may have been written
	rp.follow()
}

// worst is the largest number of calls the API could have counted in one
// window: the calls sharing a moment with (t-Length, t] for some t.
// contosoQueue makes the streams of one tenant, contoso, on a server of
// its own.
func contosoQueue(t *testing.T) (jetstream.JetStream, Settings) {
	t.Helper()
	_, js := connect(t)
	s := Settings{Tenants: []string{"contoso"}}.WithDefaults()
	if _, err := Ensure(t.Context(), js, s); err != nil {
		t.Fatal(err)
	}
	return js, s
}

func worst(calls []quotaCall, w limiter.Window) (n int, at time.Time) {
	for _, c := range calls {
		// Windows ending at c.sent: every call sent by then and answered
		// after c.sent-Length falls in (c.sent-Length, c.sent].
		k := 0
		for _, o := range calls {
			if !o.sent.After(c.sent) && o.answered.After(c.sent.Add(-w.Length)) {
				k++
			}
		}
		if k > n {
			n, at = k, c.sent
		}
	}
	return n, at
}

// TestSharedQuotaHoldsAcrossReplicasAndRestarts runs several replicas'
// limiters against one JetStream journal under a fake clock, kills two of
// them mid-call and starts new ones, and pauses the tenant from one: no
// window the API could draw ever holds more calls than its count, and no
// replica calls during the pause.
func TestSharedQuotaHoldsAcrossReplicasAndRestarts(t *testing.T) {
	t.Parallel()
	js, s := contosoQueue(t)
	epoch := time.Date(2026, 11, 24, 0, 0, 0, 0, time.UTC)
	r := &quotaRig{
		t: t, js: js, s: s, clock: clockwork.NewFakeClockAt(epoch),
		// The short window binds: calls flow all the time, so a replica
		// that ignored the others or the pause would show.
		windows: []limiter.Window{{Count: 5, Length: time.Second}, {Count: 60, Length: 10 * time.Second}},
		lease:   2 * time.Second,
	}
	replicas := []*quotaReplica{r.start(0), r.start(1), r.start(2)}
	defer func() {
		for _, rp := range replicas {
			rp.kill()
		}
	}()

	const step = 20 * time.Millisecond
	var pausedAt time.Time
	const pause = 2 * time.Second
	for i := range 2000 {
		switch i {
		case 600: // a replica dies mid-call; a new process takes its place
			replicas[1].kill()
			replicas[1] = r.start(3)
		case 1000: // a 429 seen by one replica pauses them all
			pausedAt = r.clock.Now()
			replicas[2].tenant.Pause(pausedAt, pause)
			// The clock stands still until the entry reached the others:
			// a fixed wait let a slow write (a loaded machine, -race)
			// reach them steps late, and they called in the pause they
			// had not read yet.
			waitPausedEverywhere(t, replicas, pausedAt.Add(pause))
		case 1400:
			replicas[0].kill()
			replicas[0] = r.start(4)
		}
		r.clock.Advance(step)
		time.Sleep(500 * time.Microsecond)
	}
	for _, rp := range replicas {
		rp.kill()
	}
	replicas = nil

	r.mu.Lock()
	defer r.mu.Unlock()
	perReplica := map[int]int{}
	for _, c := range r.calls {
		perReplica[c.replica]++
		if c.sent.After(pausedAt.Add(5*step)) && c.sent.Before(pausedAt.Add(pause)) {
			t.Errorf("replica %d called at %v, inside the pause from %v to %v", c.replica, c.sent.Sub(epoch), pausedAt.Sub(epoch), pausedAt.Add(pause).Sub(epoch))
		}
	}
	for _, w := range r.windows {
		if n, at := worst(r.calls, w); n > w.Count {
			t.Errorf("window %v: the API could count %d calls in the window ending at %v", w, n, at.Sub(epoch))
		}
	}
	// The run only proves something if the replicas shared the work and
	// the windows were kept busy: half of the 5 a second they allow (the
	// clock does not wait for the replicas, which fall behind it on a
	// loaded machine: 132 calls in one run, about 180 in most).
	if len(perReplica) < 5 {
		t.Errorf("calls by %d replicas, want all 5 to have called: %v", len(perReplica), perReplica)
	}
	if least := 5 * 40 / 2; len(r.calls) < least {
		t.Errorf("%d calls in 40 simulated seconds, want at least %d (the window allows 5 a second)", len(r.calls), least)
	}
	t.Logf("%d calls by replica: %v", len(r.calls), perReplica)
}

// waitPausedEverywhere waits until every replica knows of the pause that
// ends at until.
func waitPausedEverywhere(t *testing.T, replicas []*quotaReplica, until time.Time) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second) // real time: a bound, not a measure
	for _, rp := range replicas {
		for rp.tenant.PausedUntil().Before(until) {
			if time.Now().After(deadline) {
				t.Fatalf("replica %d has not read the pause after 10s", rp.id)
			}
			time.Sleep(time.Millisecond)
		}
	}
}

// TestQuotaFeedCatchesUpWithAnEmptiedJournal: after `nats stream purge`,
// or with the journal's last entry deleted, no entry numbered the stream's
// last sequence will ever come; a new process must still become ready.
func TestQuotaFeedCatchesUpWithAnEmptiedJournal(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name  string
		empty func(ctx context.Context, st jetstream.Stream, last uint64) error
	}{
		{"purged", func(ctx context.Context, st jetstream.Stream, _ uint64) error { return st.Purge(ctx) }},
		{"last deleted", func(ctx context.Context, st jetstream.Stream, last uint64) error { return st.DeleteMsg(ctx, last) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			js, s := contosoQueue(t)
			var last uint64
			for range 3 {
				ack, err := js.Publish(t.Context(), s.Subjects.Quota("contoso"), []byte(`{"w":"gone","done":[{"api":"offboard","id":1,"at":1}]}`))
				if err != nil {
					t.Fatal(err)
				}
				last = ack.Sequence
			}
			st, err := js.Stream(t.Context(), offboard.StreamQuota)
			if err != nil {
				t.Fatal(err)
			}
			if err := tc.empty(t.Context(), st, last); err != nil {
				t.Fatal(err)
			}
			journal, err := NewQuotaJournal(t.Context(), js, s.Subjects)
			if err != nil {
				t.Fatal(err)
			}
			shared := limiter.NewShared(limiter.SharedOptions{Journal: journal, Lease: time.Second})
			defer shared.Close(context.Background())
			followCaughtUp(t, js, s.Subjects, shared, time.Hour)
		})
	}
}

// TestSkewedReplicaStopsCalling: B's clock is 5s ahead, beyond the 500ms
// margin. B reads A's call ends 4.5s early and, unchecked, fills the
// window again while A's calls are still in it: A and B made 20 calls in
// one 10s window. B measures its offset against the server's timestamps
// and makes no call; together they never exceed the window.
func TestSkewedReplicaStopsCalling(t *testing.T) {
	t.Parallel()
	js, s := contosoQueue(t)
	epoch := time.Date(2026, 11, 24, 0, 0, 0, 0, time.UTC)
	w := limiter.Window{Count: 10, Length: 10 * time.Second}
	r := &quotaRig{
		t: t, js: js, s: s, clock: clockwork.NewFakeClockAt(epoch),
		windows: []limiter.Window{w}, lease: 2 * time.Second, margin: 500 * time.Millisecond,
	}
	a := r.start(0)
	b := r.startSkewed(1, 5*time.Second)
	defer func() {
		a.kill()
		b.kill()
	}()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second) // real time: a bound
	defer cancel()
	for _, rp := range []*quotaReplica{a, b} {
		if err := rp.shared.WaitCaughtUp(ctx); err != nil {
			t.Fatal(err)
		}
	}
	if err := b.shared.Healthy(); err == nil {
		t.Error("B, 5s ahead with a 500ms margin, reports healthy")
	}
	if err := a.shared.Healthy(); err != nil {
		t.Errorf("A: %v", err)
	}
	if off := a.shared.ClockOffset(); off.Abs() > r.margin {
		t.Errorf("A's clock offset %v, want within the margin", off)
	}
	if off := b.shared.ClockOffset(); off < 4*time.Second || off > 5*time.Second {
		t.Errorf("B's clock offset %v, want about 5s", off)
	}
	for range 1500 { // 30 simulated seconds
		r.clock.Advance(20 * time.Millisecond)
		time.Sleep(500 * time.Microsecond) // pace: the replicas' goroutines run
	}
	a.kill()
	b.kill()

	r.mu.Lock()
	defer r.mu.Unlock()
	byReplica := map[int]int{}
	for _, c := range r.calls {
		byReplica[c.replica]++
	}
	if n, at := worst(r.calls, w); n > w.Count {
		t.Errorf("the API could count %d calls in the 10s window ending at %v (by replica: %v)", n, at.Sub(epoch), byReplica)
	}
	if byReplica[1] != 0 {
		t.Errorf("B, skewed, made %d calls", byReplica[1])
	}
	if byReplica[0] < 2*w.Count {
		t.Errorf("A made %d calls in 30s, want at least %d: it must not be held up by B", byReplica[0], 2*w.Count)
	}
}

// TestForgedFarFuturePauseIsCapped: an entry nobody but the worker should
// write, pausing the tenant for a year and holding a call due in a year,
// holds the tenant at most the longest pause a 429 sets (limiter.MaxPause,
// or the longest window if longer) plus the margin, and the call at most
// the longest lease a worker may have (limiter.MaxLease) plus the margin.
func TestForgedFarFuturePauseIsCapped(t *testing.T) {
	t.Parallel()
	js, s := contosoQueue(t)
	epoch := time.Date(2026, 11, 24, 0, 0, 0, 0, time.UTC)
	clock := clockwork.NewFakeClockAt(epoch)
	far := epoch.Add(365 * 24 * time.Hour).UnixNano()
	forged := fmt.Sprintf(`{"w":"forger","pause":%d,"res":[{"api":"offboard","id":1,"at":%d}]}`, far, far)
	if _, err := js.Publish(t.Context(), s.Subjects.Quota("contoso"), []byte(forged)); err != nil {
		t.Fatal(err)
	}
	journal, err := NewQuotaJournal(t.Context(), js, s.Subjects)
	if err != nil {
		t.Fatal(err)
	}
	const lease, margin = 2 * time.Second, 500 * time.Millisecond
	w := limiter.Window{Count: 10, Length: 10 * time.Second}
	shared := limiter.NewShared(limiter.SharedOptions{
		Journal: journal, Clock: clock, Wall: clockwork.NewRealClock(), Lease: lease, Margin: margin,
	})
	defer shared.Close(context.Background())
	l := shared.Tenant("contoso").Add("offboard", []limiter.Window{w})
	stop, err := FollowQuota(t.Context(), js, s.Subjects, shared, time.Hour, zap.NewNop())
	if err != nil {
		t.Fatal(err)
	}
	defer stop()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second) // real time: a bound
	defer cancel()
	if err := shared.WaitCaughtUp(ctx); err != nil { // the forged entry was read before
		t.Fatal(err)
	}
	if got, limit := shared.Tenant("contoso").PausedUntil(), epoch.Add(max(w.Length, limiter.MaxPause)+margin); got.After(limit) {
		t.Errorf("forged pause holds the tenant until %v, want at most %v", got.Sub(epoch), limit.Sub(epoch))
	}
	// The forged call counts as answered at most MaxLease+margin from
	// now, then leaves the window a window length later.
	if got := l.Remaining(epoch.Add(limiter.MaxLease + margin + w.Length)); got[0] != w.Count {
		t.Errorf("%d calls free once the forged call is due and out of the window, want %d", got[0], w.Count)
	}
}

// countingJournal counts the appends of a journal.
type countingJournal struct {
	*QuotaJournal
	n atomic.Int64
}

func (j *countingJournal) Append(ctx context.Context, tenant string, ev limiter.Event, last uint64) (uint64, error) {
	j.n.Add(1)
	return j.QuotaJournal.Append(ctx, tenant, ev, last)
}

// TestJournalWithItsLastEntryDeleted: the tenant's newest journal entry,
// this process's own, is deleted while an older one remains (by hand; a
// journal that lost its last entries or was made anew looks the same to
// this process, and there entries written under reused numbers never
// reach its feed). The process makes no call of the tenant and says why,
// at once, and without spinning: before, every write met the same conflict
// again, thousands a second. Started again, a process reads the journal
// as it is and calls.
func TestJournalWithItsLastEntryDeleted(t *testing.T) {
	t.Parallel()
	js, s := contosoQueue(t)
	qj, err := NewQuotaJournal(t.Context(), js, s.Subjects)
	if err != nil {
		t.Fatal(err)
	}
	j := &countingJournal{QuotaJournal: qj}
	// start starts a process over the journal: its quota and its feed.
	start := func() *limiter.Limiter {
		shared := limiter.NewShared(limiter.SharedOptions{Journal: j, Lease: time.Second, Margin: 500 * time.Millisecond})
		t.Cleanup(func() {
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			defer cancel()
			shared.Close(ctx)
		})
		l := shared.Tenant("contoso").Add("offboard", []limiter.Window{{Count: 100, Length: time.Minute}})
		followCaughtUp(t, js, s.Subjects, shared, time.Hour)
		return l
	}
	record := func(l *limiter.Limiter) error {
		p, _ := l.TryAcquire(time.Now())
		if p == nil {
			return errors.New("no permit")
		}
		ctx, cancel := context.WithTimeout(t.Context(), 3*time.Second)
		defer cancel()
		_, err := p.Record(ctx)
		if err != nil {
			p.Release()
		} else {
			p.CompleteNow()
		}
		return err
	}
	l := start()
	for range 2 {
		if err := record(l); err != nil {
			t.Fatal(err)
		}
	}
	time.Sleep(200 * time.Millisecond) // the ends written
	st, err := js.Stream(t.Context(), offboard.StreamQuota)
	if err != nil {
		t.Fatal(err)
	}
	m, err := st.GetLastMsgForSubject(t.Context(), s.Subjects.Quota("contoso"))
	if err != nil {
		t.Fatal(err)
	}
	if err := st.DeleteMsg(t.Context(), m.Sequence); err != nil {
		t.Fatal(err)
	}
	before := j.n.Load()
	begun := time.Now()
	if err := record(l); !errors.Is(err, limiter.ErrJournalEntryGone) {
		t.Fatalf("a call after the tenant's last entry was deleted: %v, want ErrJournalEntryGone", err)
	}
	if d := time.Since(begun); d > time.Second {
		t.Errorf("the call was refused after %v", d)
	}
	time.Sleep(300 * time.Millisecond) // the ends writer tries too, and backs off
	if n := j.n.Load() - before; n > 10 {
		t.Errorf("%d appends in 0.3s after the deletion", n)
	}
	if err := record(start()); err != nil {
		t.Fatalf("a process started again: %v", err)
	}
}

// TestJournalMadeAnewUnderARunningProcess: the quota stream is deleted
// and made anew while a process runs; its feed has read further than the
// new stream's first entries. It writes the tenant's first entry in the
// new stream, then another process's call is entered under a number its
// feed has read past. It must not call while that call is under way in
// a window of one.
func TestJournalMadeAnewUnderARunningProcess(t *testing.T) {
	j := newOneCallJournal(t)
	a := j.start()
	for range 5 { // a's feed reads past the first numbers
		p, err := j.record(a)
		if err != nil {
			t.Fatal(err)
		}
		p.CompleteNow()
		j.clock.Advance(2 * time.Minute)
	}
	if err := j.madeAnewUnder(a); !errors.Is(err, limiter.ErrJournalEntryGone) {
		t.Logf("a's call refused: %v", err)
	}
}

// TestRestartWithTheClockAheadReadsTheJournal: another replica made 100
// calls a moment ago; this one starts while its clock is two hours ahead,
// more than the journal's reach back. The feed starts back from the
// server's time, not this clock's: once the clock is set right and
// measured (by a probe written as soon as the step is seen), the 100
// calls fill the minute. From this clock's time, the feed started after
// them and never read them.
func TestRestartWithTheClockAheadReadsTheJournal(t *testing.T) {
	js, s := contosoQueue(t)
	other, err := NewQuotaJournal(t.Context(), js, s.Subjects)
	if err != nil {
		t.Fatal(err)
	}
	ev := limiter.Event{Writer: "other", Written: time.Now().UnixNano()}
	for i := range 100 {
		ev.Done = append(ev.Done, limiter.Call{API: "offboard", ID: uint64(i + 1), At: time.Now().UnixNano()})
	}
	if _, err := other.Append(t.Context(), "contoso", ev, 0); err != nil {
		t.Fatal(err)
	}
	clock := steptest.NewClock(t)
	clock.Step(2 * time.Hour)
	shared, l := followedOff(t, js, s, other, clock)
	// Set right: the step is seen at the next look, and a probe written
	// at once (not after probeInterval) measures the clock again.
	clock.Step(-2 * time.Hour)
	waitClockRight(t, shared)
	if got := l.Remaining(clock.Now()); got[0] != 0 || got[1] != 1400 {
		t.Errorf("remaining %v, want [0 1400]: the other replica's 100 calls of a moment ago", got)
	}
}

// TestPauseLongerThanTheWindowsReachesTheOthers: the tenant's limits are
// a minute long, and a 429 names a Retry-After of ten minutes. Every
// replica pauses for the ten minutes, not only the one that met the 429:
// the others must not read the pause as a forgery to cut to the longest
// window. Before, they called again after a minute, into the API's pause.
func TestPauseLongerThanTheWindowsReachesTheOthers(t *testing.T) {
	t.Parallel()
	js, s := contosoQueue(t)
	clock := clockwork.NewFakeClockAt(time.Date(2026, 11, 24, 0, 0, 0, 0, time.UTC))
	start := func() *limiter.Tenant {
		return followedTenant(t, js, s, clock, func(tn *limiter.Tenant) {
			tn.Add("offboard", []limiter.Window{{Count: 100, Length: time.Minute}})
		})
	}
	a, b := start(), start()
	pausedAt := clock.Now()
	a.Pause(pausedAt, 10*time.Minute)
	deadline := time.Now().Add(5 * time.Second) // real time: a bound, not a measure
	for b.PausedUntil().IsZero() {
		if time.Now().After(deadline) {
			t.Fatal("the other replica never learnt of the pause")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if got := b.PausedUntil().Sub(pausedAt); got < 10*time.Minute {
		t.Errorf("the other replica is paused for %v after a 429 that named 10m", got)
	}
}

// followedTenant is tenant contoso of a new process's shared quota on the
// journal (lease 2 s, margin 100 ms), given its APIs by add before the
// feed starts, the feed caught up; all is closed when the test ends.
func followedTenant(t *testing.T, js jetstream.JetStream, s Settings, clock clockwork.Clock, add func(*limiter.Tenant)) *limiter.Tenant {
	t.Helper()
	journal, err := NewQuotaJournal(t.Context(), js, s.Subjects)
	if err != nil {
		t.Fatal(err)
	}
	shared := limiter.NewShared(limiter.SharedOptions{Journal: journal, Clock: clock, Wall: clockwork.NewRealClock(),
		Lease: 2 * time.Second, Margin: 100 * time.Millisecond})
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		shared.Close(ctx)
	})
	tn := shared.Tenant("contoso")
	add(tn)
	followCaughtUp(t, js, s.Subjects, shared, time.Hour)
	return tn
}

// TestClockSetRightLetsAWaitingCallGo: a process whose clock is ahead of
// the NATS server's makes no call; its clock is then set right (a step)
// while a call waits for its permit and nothing else happens (no other
// replica writes, nobody asks whether it is ready). The call goes out
// within seconds. Before, nothing looked at the clock while calls were
// held for it: the step was seen only at the next periodic probe, up to
// 30 s later.
func TestClockSetRightLetsAWaitingCallGo(t *testing.T) {
	t.Parallel()
	js, s := contosoQueue(t)
	journal, err := NewQuotaJournal(t.Context(), js, s.Subjects)
	if err != nil {
		t.Fatal(err)
	}
	clock := steptest.NewClock(t)
	clock.Step(2 * time.Second)
	_, l := followedOff(t, js, s, journal, clock)
	got := make(chan error, 1)
	actx, acancel := context.WithTimeout(t.Context(), 8*time.Second)
	defer acancel()
	go func() {
		p, err := l.Acquire(actx)
		if err == nil {
			p.Release()
		}
		got <- err
	}()
	// The call waits for its permit before the clock is set right: it
	// looked at the clock as it began to wait, and found it off.
	time.Sleep(200 * time.Millisecond)
	clock.Step(-2 * time.Second)
	select {
	case err := <-got:
		if err != nil {
			t.Fatalf("no permit after the clock was set right: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no permit 5 s after the clock was set right")
	}
}

// driftingClock is the real clock off by an offset that can change
// without a step: both its readings move together, as when the clock is
// slewed back, or when the NATS server's clock is the one set right.
type driftingClock struct {
	clockwork.Clock
	off atomic.Int64
}

func (c *driftingClock) Now() time.Time                  { return c.Clock.Now().Add(time.Duration(c.off.Load())) }
func (c *driftingClock) Since(t time.Time) time.Duration { return c.Now().Sub(t) }
func (c *driftingClock) Until(t time.Time) time.Duration { return t.Sub(c.Now()) }

// TestClockBackWithoutAStepLetsAWaitingCallGo: a process whose clock is
// off the NATS server's makes no call; the two come back together with
// no step of this clock (this one slewed, or the server's set right),
// while a call waits for its permit and no other replica writes. The
// call goes out within seconds. Before, only the next periodic probe,
// up to 30 s later, measured the clock again.
func TestClockBackWithoutAStepLetsAWaitingCallGo(t *testing.T) {
	t.Parallel()
	js, s := contosoQueue(t)
	journal, err := NewQuotaJournal(t.Context(), js, s.Subjects)
	if err != nil {
		t.Fatal(err)
	}
	clock := &driftingClock{Clock: clockwork.NewRealClock()}
	clock.off.Store(int64(2 * time.Second))
	shared, l := followedOff(t, js, s, journal, clock)
	clock.off.Store(0)
	actx, acancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer acancel()
	p, err := l.Acquire(actx)
	if err != nil {
		t.Fatalf("no permit 5 s after the clock came back: %v (%v)", err, shared.Healthy())
	}
	p.Release()
}

// followedOff is a shared quota over journal whose clock is off the NATS
// server's (ahead), following the journal and caught up with it, and the
// limiter of contoso's offboard calls: it makes no call until its clock
// is measured right.
func followedOff(t *testing.T, js jetstream.JetStream, s Settings, journal *QuotaJournal, clock clockwork.Clock) (*limiter.Shared, *limiter.Limiter) {
	t.Helper()
	shared := limiter.NewShared(limiter.SharedOptions{Journal: journal, Clock: clock, Margin: 500 * time.Millisecond, Lease: 15 * time.Second})
	t.Cleanup(func() { shared.Close(context.Background()) })
	l := shared.Tenant("contoso").Add("offboard", limiter.Default())
	followCaughtUp(t, js, s.Subjects, shared, time.Hour+16*time.Second)
	if err := shared.Healthy(); err == nil {
		t.Fatal("healthy with the clock ahead of the server's")
	}
	return shared, l
}

// TestClockOffProbesLessAndLess: a process whose clock stays off the NATS
// server's probes the journal every second at first, so that calls go on
// within a second of a short offset mended, then less and less often, up
// to probeInterval: over ten minutes off, some 26 probes, where one a
// second wrote 600 to each journal, which every replica reads.
func TestClockOffProbesLessAndLess(t *testing.T) {
	t.Parallel()
	js, s := contosoQueue(t)
	journal, err := NewQuotaJournal(t.Context(), js, s.Subjects)
	if err != nil {
		t.Fatal(err)
	}
	wall := clockwork.NewFakeClockAt(time.Now().Add(time.Hour))
	followedOff(t, js, s, journal, wall)
	probes := func() uint64 {
		stream, err := js.Stream(t.Context(), offboard.StreamQuota)
		if err != nil {
			t.Fatal(err)
		}
		info, err := stream.Info(t.Context(), jetstream.WithSubjectFilter(s.Subjects.Quota(clockProbe)))
		if err != nil {
			t.Fatal(err)
		}
		return info.State.Subjects[s.Subjects.Quota(clockProbe)]
	}
	before := probes()
	for range 600 {
		wall.Advance(time.Second)
		time.Sleep(2 * time.Millisecond) // the loop takes its tick
	}
	time.Sleep(200 * time.Millisecond)
	if n := probes() - before; n > 30 {
		t.Errorf("%d probes over ten minutes with the clock off, want at most 30", n)
	}
}

// waitClockRight waits, 5 s at most (real time: a bound, not a measure),
// until shared may make calls again once the test set its clock right.
func waitClockRight(t *testing.T, shared *limiter.Shared) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for err := shared.Healthy(); err != nil; err = shared.Healthy() {
		if time.Now().After(deadline) {
			t.Fatalf("5s after the clock was set right: %v", err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
