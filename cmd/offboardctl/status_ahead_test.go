package main

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/jonboulle/clockwork"

	"github.com/contoso-secops/mde-offboard/internal/limiter"
	"github.com/contoso-secops/mde-offboard/internal/mde"
	"github.com/contoso-secops/mde-offboard/internal/queue"
)

// TestStatusOfAJournalDatedFarAhead: a replica whose clock is ten years
// ahead wrote a 429's pause and a call's end by it. The worker caps both
// as it reads them (a pause to an hour, an end to its longest window), so
// the tenant calls again within the hour; status showed it throttled for
// ten years, and an ETA to match.
func TestStatusOfAJournalDatedFarAhead(t *testing.T) {
	t.Parallel()
	js, s := contosoWithOneRequest(t)
	now := time.Now()
	ahead := now.Add(10 * 365 * 24 * time.Hour).UnixNano()
	ev := limiter.Event{Writer: "w1", Paused: ahead,
		Reserved: []limiter.Call{{API: mde.APIOffboard, ID: 1, At: ahead}}, Done: []limiter.Call{{API: mde.APIOffboard, ID: 1, At: ahead}}}
	data, _ := json.Marshal(ev)
	if _, err := js.Publish(t.Context(), "mde.offboard.quota.contoso", data); err != nil {
		t.Fatal(err)
	}

	// The worker's limiter, fed the same entry.
	shared := limiter.NewShared(limiter.SharedOptions{Clock: clockwork.NewFakeClockAt(now), Margin: queue.DefaultQuotaMargin, Writer: "w2"})
	tl := shared.Tenant("contoso")
	tl.Add(mde.APIOffboard, []limiter.Window{{Count: 10, Length: time.Minute}})
	shared.Deliver(1, "contoso", ev)
	workerUntil := tl.PausedUntil()

	c := &cli{js: js, timeout: 5 * time.Second, subjects: s.Subjects}
	for _, tenant := range []string{"contoso", ""} { // one tenant's subject read, and every tenant's journal read once
		sts, err := c.status(t.Context(), tenant, now)
		if err != nil {
			t.Fatal(err)
		}
		st := sts[0]
		if st.ThrottledTill == nil || st.ThrottledTill.After(workerUntil) {
			t.Errorf("status %q: throttled till %v, want no later than the worker's %v", tenant, st.ThrottledTill, workerUntil)
		}
		if st.ETA == nil || *st.ETA > (2*time.Hour).Seconds() {
			t.Errorf("status %q: ETA %v, want within the hour's pause and a window", tenant, etaCell(st))
		}
	}
}
