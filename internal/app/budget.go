package app

import (
	"context"
	"fmt"
	"time"

	"github.com/contoso-secops/mde-offboard/internal/limiter"
	"github.com/contoso-secops/mde-offboard/internal/queue"
	"github.com/contoso-secops/mde-offboard/offboard"
)

// budgetHorizon is the longest budget the budget journal can count: its
// history less the lease and the clock margin. It is negative when that
// leaves none (worker.Options.BudgetHorizon), also at exactly zero, which
// the worker would take for its default of 24h.
func (a *App) budgetHorizon() time.Duration {
	if h := queue.BudgetHorizon(a.budgetHistory(), a.opts.QuotaMargin); h > 0 {
		return h
	}
	return -1
}

// budgetHistory is how far back the budget journal is read and counted:
// --budget-history, or longer where the journal's stream keeps its
// entries longer (keptBudget).
func (a *App) budgetHistory() time.Duration {
	return max(a.opts.Queue.BudgetHistory, a.budgetKept)
}

// keptBudget reads how long the budget journal's stream keeps its
// entries. Setup never shortens it (queue.keptHistory), and under
// --no-setup it is what deploy/nats or an operator set: a replica whose
// --budget-history is shorter (a flag lowered, a rolling update) runs
// over a stream that keeps more. offboardctl budget takes the longest
// window it may set from the stream, and status shows such an override
// in force: counted from the flag alone, the replica ignored it, and the
// tenant went on under the tenants file's budget, or none. A stream that
// keeps its entries for ever (no max age) leaves the flag's history.
func (a *App) keptBudget(ctx context.Context) {
	stream, err := a.js.Stream(ctx, offboard.StreamBudget)
	if err != nil {
		return // the journal's feed says what is wrong with the stream
	}
	if keep := stream.CachedInfo().Config.MaxAge; keep > a.opts.Queue.BudgetHistory {
		a.budgetKept = keep
	}
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
	a.followBudget, err = queue.FollowBudget(ctx, a.js, a.opts.Queue.Subjects, a.budget, a.budgetHistory(), a.log)
	return err
}
