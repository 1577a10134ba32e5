package queue

import (
	"context"
	"testing"
	"time"

	"github.com/contoso-secops/mde-offboard/internal/limiter"
	"github.com/contoso-secops/mde-offboard/internal/limiter/steptest"
)

// TestRestartWithTheClockBehindReadsTheJournal: another replica's 100
// calls of a moment ago fill the minute, one more is under way, and a
// 429 paused the tenant for 30 s. A process starts with its clock two
// hours behind (a hardware clock read as local time before NTP set it
// right) and reads the journal; its clock is then set right. Once it
// is measured, the minute is full and the tenant paused. Before, the
// caps on times from the journal (an end at most a window ahead, a
// pause at most an hour) were taken from the clock two hours behind:
// every call and the pause were cut to an hour ago, and 100 more calls
// went out in the minute, into the pause. An entry that cannot be read,
// stored a moment ago, holds its tenant for an hour as it would have.
func TestRestartWithTheClockBehindReadsTheJournal(t *testing.T) {
	t.Parallel()
	js, s := contosoQueue(t)
	other, err := NewQuotaJournal(t.Context(), js, s.Subjects)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	ev := limiter.Event{Writer: "other", Written: now.UnixNano(), Paused: now.Add(30 * time.Second).UnixNano(),
		Reserved: []limiter.Call{{API: "offboard", ID: 101, At: now.Add(15 * time.Second).UnixNano()}}}
	for i := range 100 {
		ev.Done = append(ev.Done, limiter.Call{API: "offboard", ID: uint64(i + 1), At: now.UnixNano()})
	}
	if _, err := other.Append(t.Context(), "contoso", ev, 0); err != nil {
		t.Fatal(err)
	}
	if _, err := js.Publish(t.Context(), s.Subjects.Quota("fabrikam"), []byte("not an entry")); err != nil {
		t.Fatal(err)
	}
	clock := steptest.NewClock(t)
	clock.Step(-2 * time.Hour)
	shared := limiter.NewShared(limiter.SharedOptions{Journal: other, Clock: clock, Margin: 500 * time.Millisecond, Lease: 15 * time.Second})
	t.Cleanup(func() { shared.Close(context.Background()) })
	l := shared.Tenant("contoso").Add("offboard", limiter.Default())
	shared.Tenant("fabrikam").Add("offboard", limiter.Default())
	followCaughtUp(t, js, s.Subjects, shared, time.Hour+16*time.Second)
	clock.Step(2 * time.Hour) // set right
	waitClockRight(t, shared)
	if got := l.Remaining(clock.Now()); got[0] != 0 || got[1] != 1399 {
		t.Errorf("remaining %v, want [0 1399]: the other replica's 100 calls of a moment ago and one under way", got)
	}
	if until := shared.Tenant("contoso").PausedUntil(); until.Before(clock.Now().Add(25 * time.Second)) {
		t.Errorf("paused until %v, want about 30s from %v: the other replica's 429", until, clock.Now())
	}
	if until := shared.Tenant("fabrikam").PausedUntil(); until.Before(clock.Now().Add(time.Hour)) {
		t.Errorf("fabrikam paused until %v, want an hour from %v: its unreadable entry of a moment ago", until, clock.Now())
	}
}
