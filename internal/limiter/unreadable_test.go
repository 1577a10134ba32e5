package limiter

import (
	"context"
	"testing"
	"time"

	"github.com/jonboulle/clockwork"
)

// TestUnreadableEntryHoldsItsCallsWindow: an entry that cannot be read
// (written by another version) may have entered calls, each of which the
// API may count as late as its due time, a lease on, and keeps in its
// windows for their length after that. The tenant waits until a call
// counted then has left the longest window. (It waited a lease: with
// 1/1m, a call then was the second the API saw in its minute.)
func TestUnreadableEntryHoldsItsCallsWindow(t *testing.T) {
	t.Parallel()
	clock := clockwork.NewFakeClockAt(epoch)
	j := &memJournal{last: map[string]uint64{}}
	ws := []Window{{Count: 1, Length: time.Minute}, {Count: 10, Length: 10 * time.Minute}}
	const lease, margin = 45 * time.Second, 500 * time.Millisecond
	s, l := j.process(t, clock, margin, lease, ws)

	s.DeliverUnreadable(1, "contoso", epoch)
	// A call the entry may hold, due at the lease, was counted by then at
	// the latest: it stays in the 10-minute window until 10 minutes on.
	free := lease + 10*time.Minute + margin
	for _, d := range []time.Duration{lease + margin + time.Millisecond, lease + time.Minute + margin, free - time.Millisecond} {
		if p, _ := l.TryAcquire(epoch.Add(d)); p != nil {
			p.Release()
			t.Errorf("a permit %v after an unreadable entry, want none before %v", d, free)
		}
	}
	if p, _ := l.TryAcquire(epoch.Add(free)); p == nil {
		t.Errorf("no permit %v after an unreadable entry", free)
	} else {
		p.Release()
	}
}

// TestUnreadableEntryOfLongAgoHoldsNothing: the hold counts from when the
// entry was stored, not from when a process reads it. A worker restarted
// reads back the journal's history: an unreadable entry stored an hour and
// a half before, whose calls have long left every window, held the tenant
// for another hour at each restart.
func TestUnreadableEntryOfLongAgoHoldsNothing(t *testing.T) {
	t.Parallel()
	clock := clockwork.NewFakeClockAt(epoch)
	j := &memJournal{last: map[string]uint64{}}
	ws := []Window{{Count: 100, Length: time.Minute}, {Count: 1500, Length: time.Hour}}
	const lease, margin = 45 * time.Second, 500 * time.Millisecond
	s, l := j.process(t, clock, margin, lease, ws)

	s.DeliverUnreadable(1, "contoso", epoch.Add(-90*time.Minute))
	if p, _ := l.TryAcquire(epoch); p == nil {
		t.Error("no permit: an unreadable entry of 90 minutes ago holds the tenant")
	} else {
		p.Release()
	}
	// One of 30 minutes ago holds it until its calls leave the hour.
	s.DeliverUnreadable(2, "contoso", epoch.Add(-30*time.Minute))
	free := 30*time.Minute + lease + margin
	checkHeldUntil(t, l, free)
}

// TestUnreadableBudgetEntryHoldsTheBudgetInForce: a budget (a counter)
// keeps the stamps of its whole horizon, the longest budget the journal
// can count, so that a longer budget set later still sees them; the
// budget in force may be much shorter. An unreadable entry of the budget
// journal holds the tenant until its slots leave the budget in force, a
// lease on: held for the horizon, a tenant with 100/24h under a 30-day
// history took no slot for 30 days.
func TestUnreadableBudgetEntryHoldsTheBudgetInForce(t *testing.T) {
	t.Parallel()
	clock := clockwork.NewFakeClockAt(epoch)
	const lease, margin, horizon = 2 * time.Hour, 500 * time.Millisecond, 30 * 24 * time.Hour
	s := NewShared(SharedOptions{Journal: &memJournal{last: map[string]uint64{}}, Clock: clock, Margin: margin, Lease: lease})
	t.Cleanup(func() { s.Close(context.Background()) })
	l := s.Tenant("contoso").AddCounter("budget", horizon)
	l.SetWindows([]Window{{Count: 100, Length: 24 * time.Hour}})
	s.MarkCaughtUp(0)

	s.DeliverUnreadable(1, "contoso", epoch)
	free := lease + 24*time.Hour + margin
	checkHeldUntil(t, l, free)
}

// TestUnreadableEntryStampedAheadHoldsAWindowAtMost: the time the server
// stored an entry comes from its clock, which may have been far ahead
// when it stored it and set right since. The hold lasts no longer than
// if the entry were stored as it is read: stamped a month ahead, it held
// the tenant a month, and again at each restart while the stream kept it.
func TestUnreadableEntryStampedAheadHoldsAWindowAtMost(t *testing.T) {
	t.Parallel()
	clock := clockwork.NewFakeClockAt(epoch)
	j := &memJournal{last: map[string]uint64{}}
	ws := []Window{{Count: 100, Length: time.Minute}, {Count: 1500, Length: time.Hour}}
	const lease, margin = 45 * time.Second, 500 * time.Millisecond
	s, l := j.process(t, clock, margin, lease, ws)

	s.DeliverUnreadable(1, "contoso", epoch.Add(30*24*time.Hour))
	checkHeldUntil(t, l, lease+time.Hour+margin)
}

// checkHeldUntil checks that l gives no permit just before free after
// epoch, and one at free.
func checkHeldUntil(t *testing.T, l *Limiter, free time.Duration) {
	t.Helper()
	if p, _ := l.TryAcquire(epoch.Add(free - time.Millisecond)); p != nil {
		p.Release()
		t.Errorf("a permit before %v", free)
	}
	if p, wait := l.TryAcquire(epoch.Add(free)); p == nil {
		t.Errorf("no permit %v on: held %v more", free, wait)
	} else {
		p.Release()
	}
}
