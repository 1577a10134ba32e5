package app

import (
	"context"
	"fmt"
	"time"

	"github.com/contoso-secops/mde-offboard/internal/limiter"
	"github.com/contoso-secops/mde-offboard/internal/queue"
)

// budgetHorizon is the longest budget the budget journal can count: its
// history less the lease and the clock margin. It is negative when that
// leaves none (worker.Options.BudgetHorizon), also at exactly zero, which
// the worker would take for its default of 24h.
func (a *App) budgetHorizon() time.Duration {
	if h := queue.BudgetHorizon(a.opts.Queue.BudgetHistory, a.opts.QuotaMargin); h > 0 {
		return h
	}
	return -1
}

// checkBudgets refuses a tenants file whose budgets the budget journal
// keeps too short a history for.
func (a *App) checkBudgets() error {
	for _, t := range a.tenants {
		if w := t.Config.Guards.BudgetWindow; w != nil && w.Length > a.budgetHorizon() {
			return fmt.Errorf("tenant %s: guards.budget %s is longer than the budget history %s allows (less the %s lease and the margin): raise --budget-history",
				t.Config.Name, w, a.opts.Queue.BudgetHistory, queue.BudgetLease)
		}
	}
	return nil
}

// openBudget opens the budget journal and the budget every replica shares
// through it (internal/worker/budget.go).
func (a *App) openBudget(ctx context.Context) error {
	journal, err := queue.NewBudgetJournal(ctx, a.js, a.opts.Queue.Subjects)
	if err != nil {
		return err
	}
	a.life.add("budget journal feed", func(context.Context) error {
		if a.followBudget != nil {
			a.followBudget()
		}
		return nil
	})
	a.budget = limiter.NewShared(limiter.SharedOptions{
		Journal: journal, Clock: a.opts.Clock, Margin: a.opts.QuotaMargin, Lease: queue.BudgetLease,
		Writer:  a.shared.Writer(), // one name per process in both journals
		Metrics: limiter.NewBudgetJournalMetrics(a.reg), Name: "budget journal",
	})
	a.life.add("budget journal writes", func(ctx context.Context) error {
		wctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		a.budget.Close(wctx)
		return nil
	})
	return nil
}

// startBudgetFeed reads the budget journal's whole history, then follows
// it.
func (a *App) startBudgetFeed(ctx context.Context) (err error) {
	a.followBudget, err = queue.FollowBudget(ctx, a.js, a.opts.Queue.Subjects, a.budget, a.opts.Queue.BudgetHistory, a.log)
	return err
}
