package main

import (
	"testing"
	"time"

	"github.com/contoso-secops/mde-offboard/internal/limiter"
	"github.com/contoso-secops/mde-offboard/internal/queue"
	"github.com/contoso-secops/mde-offboard/internal/queue/natstest"
	"github.com/contoso-secops/mde-offboard/offboard"
)

// TestStatusOfASlotUnderWayPastAnHour: a replica reserved a slot of a
// 2/10s budget and died before ending it. The worker counts such a slot
// as under way until its due time, the budget slot's lease (two hours)
// after it was reserved, and holds the tenant meanwhile. Status of every
// tenant and of the tenant alone shows it used at 90 minutes, as the
// worker does. Before, status cut a budget slot's due time to an hour, as
// for a quota call, and showed it free from then on while the worker
// still held it.
func TestStatusOfASlotUnderWayPastAnHour(t *testing.T) {
	t.Parallel()
	_, js := natstest.Connect(t)
	s := queue.Settings{Tenants: []string{"contoso"}, Budgets: map[string]string{"contoso": "2/10s"}}
	if _, err := queue.Ensure(t.Context(), js, s); err != nil {
		t.Fatal(err)
	}
	reserved := time.Now()
	for id := range uint64(2) {
		publishEvent(t, js, offboard.Subjects{}.Budget("contoso"), limiter.Event{Writer: "w2", Reserved: []limiter.Call{
			{API: budgetAPI, ID: id + 1, At: reserved.Add(queue.BudgetLease).UnixNano()}}})
	}
	c := &cli{js: js, timeout: 10 * time.Second, subjects: offboard.Subjects{}}
	for _, tenant := range []string{"", "contoso"} {
		sts, err := c.status(t.Context(), tenant, reserved.Add(90*time.Minute))
		if err != nil {
			t.Fatal(err)
		}
		b := sts[0].Budget
		if b.Used == nil || b.Left == nil || *b.Used != 2 || *b.Left != 0 {
			t.Errorf("status %q: budget used %v, left %v, want used 2, left 0: both slots are under way until their lease", tenant, deref(b.Used), deref(b.Left))
		}
	}
}

func deref(n *int) any {
	if n == nil {
		return nil
	}
	return *n
}
