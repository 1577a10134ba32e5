package main

import (
	"testing"
	"time"

	"github.com/jonboulle/clockwork"

	"github.com/contoso-secops/mde-offboard/internal/limiter"
	"github.com/contoso-secops/mde-offboard/internal/mde"
	"github.com/contoso-secops/mde-offboard/internal/queue"
)

// TestStatusOfAnUnreadableJournalEntry: an entry of the tenant's quota
// journal that a worker cannot read (another version's) may have entered
// calls, so the worker pauses the tenant until any such call has left its
// windows. Status ignored the entry: it showed every call left and the
// backlog going now while the worker made no call.
func TestStatusOfAnUnreadableJournalEntry(t *testing.T) {
	t.Parallel()
	js, s := contosoWithOneRequest(t)
	ack, err := js.Publish(t.Context(), "mde.offboard.quota.contoso", []byte(`["a later version"]`))
	if err != nil {
		t.Fatal(err)
	}
	m, err := js.Stream(t.Context(), "MDE_OFFBOARD_QUOTA")
	if err != nil {
		t.Fatal(err)
	}
	stored, err := m.GetMsg(t.Context(), ack.Sequence)
	if err != nil {
		t.Fatal(err)
	}
	now := stored.Time.Add(time.Second)

	// The worker's limiter, fed the same entry, with the default lease.
	shared := limiter.NewShared(limiter.SharedOptions{Clock: clockwork.NewFakeClockAt(now), Margin: queue.DefaultQuotaMargin,
		Lease: mde.DefaultTimeout * 3 / 2, Writer: "w2"})
	tl := shared.Tenant("contoso")
	tl.Add(mde.APIOffboard, []limiter.Window{{Count: 10, Length: time.Minute}})
	shared.DeliverUnreadable(ack.Sequence, "contoso", stored.Time)
	workerUntil := tl.PausedUntil()

	c := &cli{js: js, timeout: 5 * time.Second, subjects: s.Subjects}
	for _, tenant := range []string{"contoso", ""} { // one tenant's subject read, and every tenant's journal read once
		sts, err := c.status(t.Context(), tenant, now)
		if err != nil {
			t.Fatal(err)
		}
		st := sts[0]
		if st.ThrottledTill == nil || !st.ThrottledTill.Equal(workerUntil) {
			t.Errorf("status %q: throttled till %v, want the worker's %v", tenant, st.ThrottledTill, workerUntil)
		}
		if want := workerUntil.Sub(now).Seconds(); st.ETA == nil || *st.ETA < want {
			t.Errorf("status %q: ETA %v, want at least the %vs the worker waits", tenant, etaCell(st), want)
		}
	}
}
