package worker

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/contoso-secops/mde-offboard/internal/limiter"
	"github.com/contoso-secops/mde-offboard/internal/queue"
	"github.com/contoso-secops/mde-offboard/offboard"
)

// rivalJournal is a budget journal in which another replica takes a slot
// right before this process's first slot is entered: both saw one left,
// and the other's compare-and-swap came first.
type rivalJournal struct {
	limiter.Journal
	once sync.Once
}

func (j *rivalJournal) Append(ctx context.Context, tenant string, ev limiter.Event, last uint64) (uint64, error) {
	if len(ev.Reserved) > 0 {
		j.once.Do(func() {
			rival := limiter.Event{Writer: "rival", Reserved: []limiter.Call{{API: budgetAPI, ID: 1, At: time.Now().Add(queue.BudgetLease).UnixNano()}}}
			if _, err := j.Journal.Append(ctx, tenant, rival, last); err != nil {
				panic(err)
			}
		})
	}
	return j.Journal.Append(ctx, tenant, ev, last)
}

// TestLastSlotTakenByAnotherReplica: a request that found the budget's
// last slot free here, but lost it to another replica in the budget
// journal, waits as the requests held by the budget do: counted as held
// (it gave its quota permit and its place back), and no call goes out.
// Before, it waited inside the journal write, unseen by the held gauge.
func TestLastSlotTakenByAnotherReplica(t *testing.T) {
	t.Parallel()
	var shared *limiter.Shared
	e := setupLoopOpts(t, `["100/1m"]`, "    guards:\n      budget: \"1/1h\"\n", RetryPolicy{}, func(o *Options) {
		bj, err := queue.NewBudgetJournal(t.Context(), o.JS, o.Settings.Subjects)
		if err != nil {
			t.Fatal(err)
		}
		shared = limiter.NewShared(limiter.SharedOptions{
			Journal: &rivalJournal{Journal: bj}, Clock: o.Clock, Margin: time.Minute, Lease: queue.BudgetLease,
		})
		followJournal(t, o.JS, o.Settings.Subjects, shared, true)
		o.Budget, o.BudgetHorizon = shared, 24*time.Hour
	})
	e.publish(t, "r-1")
	held := e.w.m.HeldRequests.WithLabelValues("contoso", HeldBudget)
	deadline := time.Now().Add(10 * time.Second)
	for testutil.ToFloat64(held) != 1 {
		if time.Now().After(deadline) {
			t.Fatalf("mde_offboard_held_requests{reason=budget} = %v, want 1: the request waits for the slot the other replica took", testutil.ToFloat64(held))
		}
		time.Sleep(20 * time.Millisecond)
	}
	select {
	case r := <-e.results:
		t.Fatalf("result %s %s while the budget is spent", r.RequestID, r.Outcome)
	case <-time.After(200 * time.Millisecond):
	}
	if n := len(e.sim.Actions(loopTenantID)); n != 0 {
		t.Fatalf("%d actions created with the budget's only slot taken by another replica", n)
	}

	// The other replica's call is refused: its slot is given back, and
	// the request takes it.
	bj, err := queue.NewBudgetJournal(t.Context(), e.js, offboard.Subjects{})
	if err != nil {
		t.Fatal(err)
	}
	back := limiter.Event{Writer: "rival", Done: []limiter.Call{{API: budgetAPI, ID: 1}}}
	_, err = bj.Append(t.Context(), "contoso", back, 0)
	var conflict *limiter.ConflictError
	if !errors.As(err, &conflict) {
		t.Fatalf("append after no entry: %v, want a conflict naming the last", err)
	}
	if _, err := bj.Append(t.Context(), "contoso", back, conflict.Last); err != nil {
		t.Fatal(err)
	}
	e.wantCreated(t, "r-1")
}
