package queue

import (
	"context"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"github.com/jonboulle/clockwork"
	"go.uber.org/zap"

	"github.com/contoso-secops/mde-offboard/internal/limiter"
)

// budgetProcess is one worker process's budget of a tenant: its own view
// of the budget journal and a few goroutines that, as requests arrive,
// reserve a slot, call, and count the slot (created) or give it back.
type budgetProcess struct {
	shared  *limiter.Shared
	counter *limiter.Limiter
	cancel  context.CancelFunc
	work    sync.WaitGroup
	follow  func()
	killed  sync.Once
}

// startBudget starts a process with a fresh view of the journal, as a
// restarted worker would, whose requests arrive at random.
func (r *quotaRig) startBudget(id int, budget limiter.Window, seed uint64) *budgetProcess {
	r.t.Helper()
	journal, err := NewBudgetJournal(r.t.Context(), r.js, r.s.Subjects)
	if err != nil {
		r.t.Fatal(err)
	}
	shared := limiter.NewShared(limiter.SharedOptions{
		Journal: journal, Clock: r.clock, Lease: r.lease, Margin: r.margin, Wall: clockwork.NewRealClock(),
	})
	counter := shared.Tenant("contoso").AddCounter("created", time.Hour)
	counter.SetWindows([]limiter.Window{budget})
	follow, err := FollowBudget(r.t.Context(), r.js, r.s.Subjects, shared, time.Hour, zap.NewNop())
	if err != nil {
		r.t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	bp := &budgetProcess{shared: shared, counter: counter, cancel: cancel, follow: follow}
	for g := range 3 {
		rng := rand.New(rand.NewPCG(seed, uint64(g)))
		bp.work.Go(func() { r.budgetRequests(ctx, id, counter, rng) })
	}
	return bp
}

// budgetRequests works requests as they arrive: a slot is reserved before
// the call; the action is created (recorded as a call that created it at
// some moment between sent and answered) two times in three, otherwise
// the outcome is failed or already_pending and the slot is given back.
func (r *quotaRig) budgetRequests(ctx context.Context, id int, counter *limiter.Limiter, rng *rand.Rand) {
	for {
		select { // the next request arrives
		case <-r.clock.After(time.Duration(rng.IntN(5)) * 20 * time.Millisecond):
		case <-ctx.Done():
			return
		}
		slot, err := counter.Acquire(ctx)
		if err != nil {
			return
		}
		due, err := slot.Record(ctx)
		if err != nil {
			slot.Release()
			return
		}
		sent, created := r.clock.Now(), rng.IntN(3) > 0
		select {
		case <-r.clock.After(time.Duration(rng.IntN(3)) * 20 * time.Millisecond):
		case <-ctx.Done():
			// Killed mid-call: the action may have been created at any
			// time until the slot is due.
			r.record(quotaCall{sent: sent, answered: due, replica: id})
			return
		}
		if !created {
			slot.Release()
			continue
		}
		// The time the answer came, read once: the clock moves on
		// meanwhile, and the action cannot have been created after it.
		answered := r.clock.Now()
		slot.Complete(answered)
		r.record(quotaCall{sent: sent, answered: answered, replica: id})
	}
}

func (bp *budgetProcess) kill() {
	bp.killed.Do(func() {
		bp.cancel()
		bp.work.Wait()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		bp.shared.Close(ctx)
		bp.follow()
	})
}

// TestSharedBudgetHoldsAcrossProcessesAndRestarts: several processes'
// budgets on one JetStream budget journal, under a fake clock, with
// requests arriving at random, a third of them not creating an action,
// processes killed mid-call and restarted, and the budget raised while
// they run: no window of the budget's length ever holds more created
// actions than the budget allowed then.
func TestSharedBudgetHoldsAcrossProcessesAndRestarts(t *testing.T) {
	t.Parallel()
	js, s := contosoQueue(t)
	epoch := time.Date(2026, 11, 24, 0, 0, 0, 0, time.UTC)
	r := &quotaRig{t: t, js: js, s: s, clock: clockwork.NewFakeClockAt(epoch), lease: 2 * time.Second}
	low, high := limiter.Window{Count: 8, Length: 3 * time.Second}, limiter.Window{Count: 12, Length: 3 * time.Second}
	procs := []*budgetProcess{r.startBudget(0, low, 1), r.startBudget(1, low, 2), r.startBudget(2, low, 3)}
	defer func() {
		for _, bp := range procs {
			bp.kill()
		}
	}()
	const step = 20 * time.Millisecond
	next := 3
	var raisedAt time.Time
	for i := range 2000 {
		switch {
		case i == 1000: // an operator raises the budget on every process
			raisedAt = r.clock.Now()
			for _, bp := range procs {
				bp.counter.SetWindows([]limiter.Window{high})
			}
		case i%300 == 150: // a process dies mid-call; a new one takes its place
			k := i / 300 % len(procs)
			procs[k].kill()
			w := low
			if !raisedAt.IsZero() {
				w = high
			}
			procs[k] = r.startBudget(next, w, uint64(10+next))
			next++
		}
		r.clock.Advance(step)
		time.Sleep(500 * time.Microsecond)
	}
	for _, bp := range procs {
		bp.kill()
	}
	procs = nil

	r.mu.Lock()
	defer r.mu.Unlock()
	var before, after []quotaCall
	perProcess := map[int]int{}
	for _, c := range r.calls {
		perProcess[c.replica]++
		if c.sent.Before(raisedAt) {
			before = append(before, c)
		}
		after = append(after, c)
	}
	if n, at := worst(before, low); n > low.Count {
		t.Errorf("budget %v: %d actions created in the window ending at %v", low, n, at.Sub(epoch))
	}
	if n, at := worst(after, high); n > high.Count {
		t.Errorf("budget %v: %d actions created in the window ending at %v", high, n, at.Sub(epoch))
	}
	if len(perProcess) < 5 || len(r.calls) < 8*10 {
		t.Errorf("%d actions by %d processes: the budget was not kept busy (%v)", len(r.calls), len(perProcess), perProcess)
	}
	t.Logf("%d actions created by process: %v", len(r.calls), perProcess)
}
