package worker

import (
	"context"
	"net/http"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/jonboulle/clockwork"

	"github.com/contoso-secops/mde-offboard/internal/limiter"
	"github.com/contoso-secops/mde-offboard/internal/mde"
	"github.com/contoso-secops/mde-offboard/internal/mde/mdesim"
	"github.com/contoso-secops/mde-offboard/internal/queue"
	"github.com/contoso-secops/mde-offboard/offboard"
)

// slotEnds is a budget journal that keeps the ends of slots written to
// it, by slot.
type slotEnds struct {
	limiter.Journal
	mu   sync.Mutex
	ends map[uint64]int64 // slot id: its end's time (0: given back)
}

func (j *slotEnds) Append(ctx context.Context, tenant string, ev limiter.Event, last uint64) (uint64, error) {
	seq, err := j.Journal.Append(ctx, tenant, ev, last)
	if err == nil {
		j.mu.Lock()
		for _, c := range ev.Done {
			j.ends[c.ID] = c.At
		}
		j.mu.Unlock()
	}
	return seq, err
}

// firstEnd is how the first slot ended: whether it did, and whether it
// counts as a creation.
func (j *slotEnds) firstEnd() (ended, counts bool) {
	j.mu.Lock()
	defer j.mu.Unlock()
	at, ok := j.ends[1]
	return ok, at != 0
}

// leaseEnv is loopEnv with a 1/3h budget shared through the budget
// journal, and another replica's view of that budget.
type leaseEnv struct {
	*loopEnv
	mine  *limiter.Shared
	other *limiter.Limiter
	ends  *slotEnds
}

func setupLease(t *testing.T, retry RetryPolicy) *leaseEnv {
	t.Helper()
	l := &leaseEnv{}
	l.loopEnv = setupLoopOpts(t, `["100/1m"]`, "    guards:\n      budget: \"1/3h\"\n", retry, func(o *Options) {
		l.mine, _ = followedBudget(t, o, "worker", func(j limiter.Journal) limiter.Journal {
			l.ends = &slotEnds{Journal: j, ends: map[uint64]int64{}}
			return l.ends
		})
		o.Budget, o.BudgetHorizon = l.mine, 24*time.Hour
		_, l.other = followedBudget(t, o, "other", nil)
		l.other.SetWindows([]limiter.Window{{Count: 1, Length: 3 * time.Hour}})
	})
	return l
}

// firstSlot is how the worker's first slot ended (slotEnds.firstEnd),
// once the ends it has are written.
func (e *leaseEnv) firstSlot(t *testing.T) (ended, counts bool) {
	t.Helper()
	if err := e.mine.Tenant("contoso").Flush(t.Context()); err != nil {
		t.Fatal(err)
	}
	return e.ends.firstEnd()
}

// followedBudget is a budget shared through the budget journal of o's
// JetStream (wrapped, unless wrap is nil), as the replica named writer
// has it, with tenant contoso's counter made before the feed starts. The
// clock is o's; its times are compared with the server's on the real
// clock.
func followedBudget(t *testing.T, o *Options, writer string, wrap func(limiter.Journal) limiter.Journal) (*limiter.Shared, *limiter.Limiter) {
	t.Helper()
	var bj limiter.Journal
	bj, err := queue.NewBudgetJournal(t.Context(), o.JS, o.Settings.Subjects)
	if err != nil {
		t.Fatal(err)
	}
	if wrap != nil {
		bj = wrap(bj)
	}
	s := limiter.NewShared(limiter.SharedOptions{
		Journal: bj, Clock: o.Clock, Margin: time.Second, Lease: queue.BudgetLease, Writer: writer,
		Wall: clockwork.NewRealClock(), // the server's stamps run on real time
	})
	l := s.Tenant("contoso").AddCounter(budgetAPI, 24*time.Hour)
	followJournal(t, o.JS, o.Settings.Subjects, s, true)
	return s, l
}

// untilResult drives the fake clock, 10 s every 10 ms, until the next
// result; onTick, if set, runs at each step. It returns the result and
// the fake time by which the request's first action had been made (the
// result's arrival if none was seen before it).
func (e *loopEnv) untilResult(t *testing.T, onTick func()) (offboard.Result, time.Time) {
	t.Helper()
	var made time.Time
	start := e.clock.Now()
	deadline := time.After(60 * time.Second)
	// Small steps: the action is seen made at the first step after its
	// call, and a busy machine's delay before that step must not put it
	// minutes of fake time later (wantOtherCounts allows 30 minutes).
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case r := <-e.results:
			if made.IsZero() {
				made = e.clock.Now()
			}
			return r, made
		case <-tick.C:
			if made.IsZero() && len(e.sim.Actions(loopTenantID)) > 0 {
				made = e.clock.Now()
			}
			if onTick != nil {
				onTick()
			}
			e.clock.Advance(10 * time.Second)
		case <-deadline:
			t.Fatalf("no result after %v of fake time", e.clock.Since(start))
		}
	}
}

// untilCreated is untilResult for r-1's result, which must be created
// with the request's only action. It returns the fake time by which the
// call that created the action had gone out.
func (e *loopEnv) untilCreated(t *testing.T, onTick func()) time.Time {
	t.Helper()
	r, made := e.untilResult(t, onTick)
	if r.RequestID != "r-1" || r.Outcome != offboard.OutcomeCreated {
		t.Fatalf("result %s %s %+v, want r-1 created", r.RequestID, r.Outcome, r.Error)
	}
	if n := len(e.sim.Actions(loopTenantID)); n != 1 {
		t.Fatalf("%d actions, want 1", n)
	}
	return made
}

// untilCreated is loopEnv.untilCreated with the other replica looking at
// its budget at each step, as its gauges and its held requests do.
func (e *leaseEnv) untilCreated(t *testing.T, onTick func()) time.Time {
	t.Helper()
	return e.loopEnv.untilCreated(t, func() {
		e.other.Remaining(e.clock.Now())
		if onTick != nil {
			onTick()
		}
	})
}

// wantOtherCounts checks that the other replica counts the action made
// at made within 3 h of it (less the steps of the clock): its budget is
// spent then. The fake clock runs 10 s each 10 ms of real time, so a busy
// machine puts made some fake minutes after the call; the half hour
// allowed still tells a count from the slot's due time, at least the
// slot's 2 h lease before the call, whose window ends an hour after it.
func (e *leaseEnv) wantOtherCounts(t *testing.T, made time.Time) {
	t.Helper()
	at := made.Add(3*time.Hour - 30*time.Minute)
	e.clock.Advance(at.Sub(e.clock.Now()))
	// The other replica reads the journal as its feed brings the entries,
	// later on a loaded machine: it has until 10 s of real time to count
	// the action. Counted from before the call, it never does.
	deadline := time.Now().Add(10 * time.Second)
	for {
		rem := e.other.Remaining(e.clock.Now())
		if rem[0] == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Errorf("another replica has %d of a 1/3h budget left %v after the action was made, want 0: it counted the action from its slot's due time, before the call went out",
				rem[0], at.Sub(made))
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestThrottlesPastTheSlotLease: a request of a tenant with a 1/3h
// budget is answered 429 with a Retry-After of an hour three times, so
// that it waits past its budget slot's lease (2 h) before its call gets
// through. Another replica, which looks at the budget all along, counts
// the slot as a creation at its due time and ignores an end written after
// it: had the call gone out after the slot came due, the other replica
// would count the action from before it was made, and its window would
// free early (a second action let through less than 3 h after the first).
// The request gives its slot back before it runs out (429s created
// nothing), goes back to the stream and takes a new one: the other
// replica counts the action at least from when it was made.
func TestThrottlesPastTheSlotLease(t *testing.T) {
	t.Parallel()
	e := setupLease(t, RetryPolicy{})
	e.sim.InjectStatus(loopTenantID, mde.APIOffboard, http.StatusTooManyRequests, "", "API calls quota exceeded", 3, time.Hour)
	e.publish(t, "r-1")
	made := e.untilCreated(t, nil)
	e.wantOtherCounts(t, made)
	if ended, counts := e.firstSlot(t); !ended || counts {
		t.Errorf("first slot ended %v, counted %v: want it given back, as only 429s answered its calls", ended, counts)
	}
}

// TestUnknownAttemptKeepsItsSlotPastTheLease: as above, but the first
// attempt is answered 503 (it may have created the action) before two
// 429s of an hour hold the request past its slot's lease. That slot keeps
// counting when the request gives it up, as after any attempt whose
// effect is unknown; the request, taken again, finds no action of its
// own, and makes one with a new slot once the budget has room.
func TestUnknownAttemptKeepsItsSlotPastTheLease(t *testing.T) {
	t.Parallel()
	// Backoffs of minutes: the 429s are set up before the repeat.
	e := setupLease(t, RetryPolicy{Base: 10 * time.Minute, Max: 10 * time.Minute})
	e.sim.InjectStatus(loopTenantID, mde.APIOffboard, http.StatusServiceUnavailable, "", "Service Unavailable", 1, 0)
	e.publish(t, "r-1")
	throttled := false
	made := e.untilCreated(t, func() {
		if !throttled && slices.ContainsFunc(e.sim.Calls(), func(c mdesim.Call) bool { return c.Status == http.StatusServiceUnavailable }) {
			e.sim.InjectStatus(loopTenantID, mde.APIOffboard, http.StatusTooManyRequests, "", "API calls quota exceeded", 2, time.Hour)
			throttled = true
		}
	})
	e.wantOtherCounts(t, made)
	if ended, counts := e.firstSlot(t); !ended || !counts {
		t.Errorf("first slot ended %v, counted %v: want it counted, as its first attempt may have acted", ended, counts)
	}
}

// callingAges follows r-1's offboard calls, as the fake clock steps: at
// each step that saw a new one, it reads the request's "calling" entry
// and keeps the oldest it found, by the fake clock (look).
type callingAges struct {
	e      *loopEnv
	seen   int
	oldest time.Duration
}

// offboards counts the simulator's offboard calls.
func (a *callingAges) offboards() int {
	return len(slices.DeleteFunc(a.e.sim.Calls(), func(c mdesim.Call) bool { return c.API != mde.APIOffboard }))
}

// look reads r-1's entry if an offboard call went out since the last look.
func (a *callingAges) look(t *testing.T) {
	t.Helper()
	n := a.offboards()
	if n == a.seen {
		return
	}
	a.seen = n
	entry, err := a.e.w.opts.Ledger.Get(t.Context(), "contoso", "r-1")
	if err != nil {
		t.Fatal(err)
	}
	if entry != nil && entry.State == queue.StateCalling {
		a.oldest = max(a.oldest, a.e.clock.Since(entry.Started))
	}
}

// wantWithinLease checks that no attempt went out that could end past
// the calling lease. Each step of the fake clock is 10 s: an attempt is
// seen at most that late.
func (a *callingAges) wantWithinLease(t *testing.T) {
	t.Helper()
	lease, timeout := a.e.w.opts.CallingLease, a.e.w.tenants["contoso"].Client.Timeout()
	if a.oldest+timeout > lease+10*time.Second {
		t.Errorf("an attempt went out %v after the calling entry it rests on, with a call timeout of %v: past the calling lease (%v), another message of the id may call too", a.oldest, timeout, lease)
	}
}

// TestThrottlesPastTheCallingLease: a request answered 429 with a
// Retry-After of an hour three times waits past its ledger entry's
// calling lease (2 h) before its call gets through. Past the lease
// another message of its id, or another process's delivery of it, takes
// the call as ended and may make its own: no attempt may go out that
// late after the "calling" entry it rests on, or while the lease could
// run out during it. When none of its attempts may have acted, the
// request writes a new entry and goes on; after one that may have (a
// 503), it goes back to the stream instead, looks for its action, and
// writes a new entry before its next attempt.
func TestThrottlesPastTheCallingLease(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name  string
		first int // status of the first attempt's answer, before the 429s (0: none)
		calls int
	}{
		{"throttled", 0, 4},     // three 429s, then the action
		{"after a 503", 503, 5}, // a 503, three 429s, then the action
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			e := setupLoop(t, `["100/1m"]`, RetryPolicy{})
			if tc.first != 0 {
				e.sim.InjectStatus(loopTenantID, mde.APIOffboard, tc.first, "", "", 1, 0)
			}
			e.sim.InjectStatus(loopTenantID, mde.APIOffboard, http.StatusTooManyRequests, "", "API calls quota exceeded", 3, time.Hour)
			e.publish(t, "r-1")
			ages := &callingAges{e: e}
			e.untilCreated(t, func() { ages.look(t) })
			if n := ages.offboards(); n != tc.calls {
				t.Fatalf("%d offboard calls, want %d", n, tc.calls)
			}
			ages.wantWithinLease(t)
		})
	}
}

// TestThrottledPastTheCallingLeaseGivesUp: a request answered nothing but
// 429s with a Retry-After of an hour gives up after its count of 429s
// (here 3), as a call does, also when that count takes it past its ledger
// entry's calling lease: no attempt of it has acted, so it writes a new
// entry and goes on, its count kept. Sent back to the stream at the lease
// instead, it started its count again with each delivery and never had a
// result.
func TestThrottledPastTheCallingLeaseGivesUp(t *testing.T) {
	t.Parallel()
	e := setupLoop(t, `["100/1m"]`, RetryPolicy{Throttles: 3})
	e.sim.InjectStatus(loopTenantID, mde.APIOffboard, http.StatusTooManyRequests, "", "API calls quota exceeded", 1000, time.Hour)
	e.publish(t, "r-1")
	ages := &callingAges{e: e}
	r, _ := e.untilResult(t, func() { ages.look(t) })
	if r.Outcome != offboard.OutcomeFailed || r.Error == nil || r.Error.Code != offboard.CodeAPIError || r.Attempts != 3 {
		t.Fatalf("result %s %+v after %d attempts, want failed %s after 3", r.Outcome, r.Error, r.Attempts, offboard.CodeAPIError)
	}
	if n := ages.offboards(); n != 3 {
		t.Errorf("%d offboard calls, want 3", n)
	}
	ages.wantWithinLease(t)
}
