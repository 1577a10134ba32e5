package worker

import (
	"context"
	"errors"
	"math"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"

	"github.com/contoso-secops/mde-offboard/internal/limiter"
	"github.com/contoso-secops/mde-offboard/offboard"
)

// This file is the tenant's budget (guards.budget, offboardctl budget): at
// most COUNT actions created in any sliding DURATION, across replicas and
// restarts. Each offboard call first reserves a slot in the budget
// journal, exactly as a quota call is entered in the quota journal (the
// same limiter, over stream MDE_OFFBOARD_BUDGET): a compare-and-swap
// append, so two replicas cannot both take the last slot. The slot counts
// from then on; it becomes a creation (Complete) when the outcome is
// created, and is given back (Release) otherwise. A slot whose process
// died counts until its lease, then as a creation at that time.

// budgetAPI names the budget's limiter in the budget journal.
const budgetAPI = "created"

// budget is one tenant's budget in this process.
type budget struct {
	tenant  string
	file    *limiter.Window // the tenants file's; nil: none
	horizon limiter.Window  // Length: the longest window the journal can count
	l       *limiter.Limiter
	log     *zap.Logger

	mu      sync.Mutex
	current string // the budget in force, "" none
	ignored string // the override last ignored (warned of), "" none

	waiting [2]atomic.Int64 // requests fetched that wait for a slot, normal and bulk (waitingOf)
	pending atomic.Uint64   // requests of served priorities not answered, last read (setPending)
}

// waitingOf counts the requests of priority p fetched that wait for a
// slot.
func (b *budget) waitingOf(p offboard.Priority) *atomic.Int64 {
	if p == offboard.Bulk {
		return &b.waiting[1]
	}
	return &b.waiting[0]
}

func (w *Worker) newBudget(t *tenantRun) *budget {
	lt := limiter.NewTenant(w.clock)
	if w.opts.Budget != nil {
		lt = w.opts.Budget.Tenant(t.name)
	}
	b := &budget{
		tenant: t.name, file: t.Config.Guards.BudgetWindow, horizon: limiter.Window{Length: w.opts.BudgetHorizon},
		l: lt.AddCounter(budgetAPI, w.opts.BudgetHorizon), log: t.log.Named("budget"),
	}
	b.update(w.opts.Control)
	return b
}

// update applies the budget in force: the operator's override, else the
// tenants file's. It reports whether that changed.
func (b *budget) update(ctrl Control) bool {
	// As offboardctl stores an override and status shows it: 500/24h,
	// not 500/24h0m0s.
	spec := ""
	if b.file != nil {
		spec = b.file.Spec()
	}
	ignored, warn := "", func() {}
	if o, ok := ctrl.Budget(b.tenant); ok {
		// ParseWindow, not ParseBudget: an override stored before a
		// budget had a shortest window stays in force, as offboardctl
		// status, which reads it so, shows it.
		switch w, err := limiter.ParseWindow(o); {
		case err != nil:
			ignored = o
			warn = func() { b.log.Warn("budget override ignored", zap.Error(err)) } // the value unquoted: it could be anything
		case w.Length > b.horizon.Length:
			ignored = o
			warn = func() {
				b.log.Warn("budget override ignored: its window is longer than the budget journal can count; raise --budget-history, "+
					"or restart the worker if the budget stream was made to keep its entries longer since it started",
					zap.String("budget", o), zap.Duration("longest", b.horizon.Length))
			}
		default:
			spec = w.Spec()
		}
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	// Once per override ignored: update runs at every change of any
	// tenant's controls.
	if ignored != b.ignored {
		warn()
	}
	b.ignored = ignored
	if spec == b.current {
		return false
	}
	b.current = spec
	var ws []limiter.Window
	if spec != "" {
		w, _ := limiter.ParseWindow(spec) // checked above
		ws = []limiter.Window{w}
	}
	b.l.SetWindows(ws) // wakes the requests that wait for a slot
	b.log.Info("budget in force", zap.String("budget", spec))
	return true
}

func (b *budget) active() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.current != ""
}

// window is the budget in force; false when there is none.
func (b *budget) window() (limiter.Window, bool) {
	b.mu.Lock()
	spec := b.current
	b.mu.Unlock()
	if spec == "" {
		return limiter.Window{}, false
	}
	w, err := limiter.ParseWindow(spec) // checked when it came into force
	return w, err == nil
}

// waitBudget returns once a slot could be reserved, without taking it: the
// tenant loop fetches nothing while the budget is spent.
func (w *Worker) waitBudget(ctx context.Context, t *tenantRun) error {
	b := t.budget
	if !b.active() {
		return nil
	}
	if b.holds(w) {
		w.kickStats() // the held gauge shows the backlog now
	}
	return b.l.Wait(ctx)
}

// overdrawn says whether the budget in force counts more actions, created
// and under way, than it allows: it was lowered after slots were taken.
// Every replica's requests holding a slot then give theirs back before
// their call, until it fits (more may give back than needed: fewer calls,
// never more).
func (b *budget) overdrawn(w *Worker) bool {
	return b.active() && b.l.Overdrawn(w.clock.Now())
}

// kickStats has runStats refresh the gauges now.
func (w *Worker) kickStats() {
	select {
	case w.statsKick <- struct{}{}:
	default:
	}
}

// remaining is the budget left, NaN without a budget.
func (b *budget) remaining(w *Worker) float64 {
	if !b.active() {
		return math.NaN()
	}
	rem := b.l.Remaining(w.clock.Now())
	if len(rem) == 0 {
		return math.NaN()
	}
	return float64(rem[0])
}

// holds says whether the budget in force lets no slot be taken now: it
// is spent, or its journal holds the tenant (an entry that could not be
// read, the journal not read yet), though its count may leave slots.
func (b *budget) holds(w *Worker) bool {
	return b.active() && b.l.Available(w.clock.Now(), 1) == 0
}

// setPending records the requests of the served priorities not answered,
// as last read: those waiting in the stream (backlog) and those delivered
// and not acked (unacked), which are the ones fetched, here or by another
// replica, and the ones handed back to the stream for a redelivery.
func (b *budget) setPending(backlog, unacked map[offboard.Priority]uint64, ctrl Control) {
	var n uint64
	for _, p := range []offboard.Priority{offboard.Normal, offboard.Bulk} {
		if !ctrl.Paused(b.tenant, p) {
			n += backlog[p] + unacked[p]
		}
	}
	b.pending.Store(n)
}

// setBudgetGauges sets the tenant's budget left and the requests its
// spent budget holds: those of served priorities fetched here that wait
// for a slot and, while no slot can be taken (holds), every one not
// answered. A request handed back to the stream (its worker stopped while
// it waited for a slot) is delivered again only once a slot is free: it
// waits as one never fetched does, counted among those not acked. A
// paused priority's are the pause's (setPaused): a slot would only take
// them to their call, which hands them back to the stream.
func (w *Worker) setBudgetGauges(t *tenantRun) {
	b := t.budget
	left := b.remaining(w)
	held := 0.0
	for _, p := range w.unpaused(t.name) {
		held += float64(b.waitingOf(p).Load())
	}
	if b.holds(w) {
		// Those waiting here are among the requests not acked when the
		// counts are newer than their fetch.
		held = max(held, float64(b.pending.Load()))
	}
	w.m.BudgetRemaining.WithLabelValues(t.name).Set(left)
	w.m.HeldRequests.WithLabelValues(t.name, HeldBudget).Set(held)
}

// runBudgets applies every control change to the budgets until ctx ends.
func (w *Worker) runBudgets(ctx context.Context) {
	for {
		changed := w.opts.Control.Changed() // before the controls are read
		for _, t := range w.tenants {
			t.budget.update(w.opts.Control)
			w.setBudgetGauges(t)
		}
		select {
		case <-ctx.Done():
			return
		case <-changed:
		}
	}
}

// errNotFinished ends a budget slot whose request did not get to its end
// (a panic): counted if a call was made.
var errNotFinished = errors.New("request not finished")

// tryFor is how a request of prio takes a slot at once: a bulk one after
// the bulk requests that wait for one (TryAcquireBehind).
func (b *budget) tryFor(prio offboard.Priority) func(time.Time) (*limiter.Permit, time.Duration) {
	if prio == offboard.Bulk {
		return b.l.TryAcquireBehind
	}
	return b.l.TryAcquire
}

// acquireFor is how a request of prio waits for a slot: a bulk one
// keeps no place from a normal one, which takes the next slot first
// (AcquireBehind).
func (b *budget) acquireFor(prio offboard.Priority) func(context.Context) (*limiter.Permit, error) {
	if prio == offboard.Bulk {
		return b.l.AcquireBehind
	}
	return b.l.Acquire
}

// reserveBudget takes a budget slot for the request's offboard call,
// waiting while the budget is spent: the request stays fetched, kept
// alive, and fails nothing (a cancel of its campaign ends the wait:
// unlessWithdrawn). While it waits it gives the quota permit back.
// It returns the slot's end, to call with the request's outcome (at most
// once counts), and the permit left. Without a budget there is no slot.
func (w *Worker) reserveBudget(ctx context.Context, j *job, permit *limiter.Permit) (func(*offboard.Result, error), *limiter.Permit, error) {
	b := j.t.budget
	if !b.active() {
		return func(*offboard.Result, error) {}, permit, nil
	}
	// A wait for a slot ends when the worker stops taking requests
	// (untilStop): the request goes back to the stream rather than hold
	// the shutdown.
	bctx, cancel := untilStop(ctx)
	defer cancel()
	var slot *limiter.Permit
	for slot == nil {
		if slot, _ = b.tryFor(j.prio)(w.clock.Now()); slot == nil {
			if permit != nil {
				permit.Release()
				permit = nil
			}
			if err := w.claimBeforeWaiting(ctx, j); err != nil {
				return nil, permit, err
			}
			b.waitingOf(j.prio).Add(1)
			w.kickStats()
			j.log.Info("budget spent: request waits for it")
			var err error
			slot, err = unlessCancelled(bctx, w, j, func(ctx context.Context) (*limiter.Permit, error) {
				return asideFor(ctx, b.acquireFor(j.prio), (*limiter.Permit).Release)
			})
			b.waitingOf(j.prio).Add(-1)
			if err != nil {
				return nil, permit, err
			}
		}
		if !b.active() {
			// Cleared while the request waited: it needs no slot, and
			// the journal the slot would be entered in may be what held
			// it.
			slot.Release()
			return func(*offboard.Result, error) {}, permit, nil
		}
		// Another replica may have taken the place in the journal
		// first: then the request waits for the next one as above,
		// counted as held, rather than inside the journal write.
		entered, err := slot.TryRecord(bctx)
		if err != nil || !entered {
			slot.Release()
			slot = nil
		}
		if err != nil {
			return nil, permit, err
		}
	}
	j.budgetSlot, j.slotDue = true, slot.Due()
	return func(res *offboard.Result, err error) {
		switch {
		case res != nil && res.Outcome == offboard.OutcomeCreated:
			slot.CompleteNow()
		case j.mayHaveActed && (err != nil || res != nil && res.Outcome == offboard.OutcomeFailed):
			// Left for redelivery after a call whose answer was lost:
			// it may have created the action, which the redelivery then
			// finds. Or failed after such a call, or after one the API
			// accepted, without its action found: it may exist all the
			// same. A call refused or throttled created none.
			slot.CompleteNow()
		case j.pendingMayBeOwn && res != nil && res.Outcome == offboard.OutcomeAlreadyPending:
			// Already pending with an action that may be the one an
			// attempt whose answer was lost created (existingAction).
			slot.CompleteNow()
		default:
			slot.Release()
		}
		j.budgetSlot, j.slotDue = false, time.Time{}
		w.setBudgetGauges(j.t)
	}, permit, nil
}
