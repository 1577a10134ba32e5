package main

import (
	"testing"
	"time"

	"github.com/contoso-secops/mde-offboard/internal/limiter"
	"github.com/contoso-secops/mde-offboard/internal/mde"
	"github.com/contoso-secops/mde-offboard/internal/queue"
	"github.com/contoso-secops/mde-offboard/internal/queue/natstest"
	"github.com/contoso-secops/mde-offboard/offboard"
)

// TestStatusOfACallOfALongerLease: a replica whose call lease is 45
// minutes (its --call-timeout 30m) entered an offboard call and died
// before ending it. The worker counts such a call as under way until its
// due time, then in each window from there (the hourly one until 1h45m
// after the entry), and reads the quota journal back far enough for it
// (limiter.MaxLease beyond its own lease). Status of every tenant and of
// the tenant alone shows the call used at 90 minutes, as the worker does.
// Before, status read the journal back an hour and two minutes, missed
// the entry, and showed 1500 of 1500 left.
func TestStatusOfACallOfALongerLease(t *testing.T) {
	t.Parallel()
	_, js := natstest.Connect(t)
	if _, err := queue.Ensure(t.Context(), js, queue.Settings{Tenants: []string{"contoso"}}); err != nil {
		t.Fatal(err)
	}
	entered := time.Now()
	publishEvent(t, js, offboard.Subjects{}.Quota("contoso"), limiter.Event{Writer: "w2", Reserved: []limiter.Call{
		{API: mde.APIOffboard, ID: 1, At: entered.Add(45 * time.Minute).UnixNano()}}})
	c := &cli{js: js, timeout: 10 * time.Second, subjects: offboard.Subjects{}}
	for _, tenant := range []string{"", "contoso"} {
		sts, err := c.status(t.Context(), tenant, entered.Add(90*time.Minute))
		if err != nil {
			t.Fatal(err)
		}
		for _, w := range sts[0].Quota {
			want := 0
			if w.Window == "1500/1h0m0s" {
				want = 1
			}
			if w.Used != want {
				t.Errorf("status %q: window %s used %d, left %d; want used %d: the call counts from its due time, 45 minutes after its entry",
					tenant, w.Window, w.Used, w.Left, want)
			}
		}
	}
}
