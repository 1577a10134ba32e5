package limiter

import (
	"testing"
	"time"

	"github.com/contoso-secops/mde-offboard/internal/limiter/steptest"
)

// TestTwoStepsBackKeepAnotherReplicasPause: this process's clock is
// stepped an hour back twice before a probe measures it (a hypervisor's
// time sync run twice), and meanwhile another replica's 429 pauses the
// tenant for 30 s. Once the clock is set right and measured, the tenant
// is still paused for about 30 s. Before, only the last step counted in
// how far the clock was behind: the pause's cap counted from an hour
// behind the server's time and cut it to the margin, and calls went out
// into the 429's pause.
func TestTwoStepsBackKeepAnotherReplicasPause(t *testing.T) {
	ca, cb, a, _, b, _ := steppedPair(t)
	probe(b)
	cb.Step(-time.Hour)
	b.LookAtClock()
	cb.Step(-time.Hour)
	b.LookAtClock()
	a.Tenant("contoso").Pause(ca.Now(), 30*time.Second)
	flush(t, a)
	probe(b) // measured two hours behind
	cb.Step(2 * time.Hour)
	b.LookAtClock()
	probe(b) // measured right
	if err := b.Healthy(); err != nil {
		t.Fatal(err)
	}
	if left := b.Tenant("contoso").PausedUntil().Sub(cb.Now()); left < 25*time.Second {
		t.Errorf("paused for %v more, want about 30s: the other replica's 429", left.Round(time.Millisecond))
	}
}

// TestStepSettingAClockAheadRightCapsFromTheServer: this process's clock
// is measured two hours ahead, then stepped two hours back (set right by
// NTP), and before a probe measures it another replica's entry pauses
// the tenant ten hours ahead (a writer whose clock was far ahead, or not
// the worker). The pause holds the tenant an hour, as it would for a
// process whose clock was right all along. Before, a step back not
// measured counted as a clock that far behind, however far ahead it had
// been found before: the cap counted from two hours past the server's
// time, and the tenant was paused for three hours.
func TestStepSettingAClockAheadRightCapsFromTheServer(t *testing.T) {
	ca, cb, a, _, b, _ := steppedPair(t)
	cb.Step(2 * time.Hour)
	b.LookAtClock()
	probe(b) // measured two hours ahead
	cb.Step(-2 * time.Hour)
	b.LookAtClock()
	a.Tenant("contoso").Pause(ca.Now(), 10*time.Hour)
	flush(t, a)
	probe(b) // measured right
	if err := b.Healthy(); err != nil {
		t.Fatal(err)
	}
	if left := b.Tenant("contoso").PausedUntil().Sub(cb.Now()); left > MaxPause+time.Minute {
		t.Errorf("paused for %v more, want an hour at most", left.Round(time.Minute))
	}
}

// steppedPair is two processes on one journal, each on a clock the test
// steps (a margin of 100 ms, a lease of 10 s): a on ca with its limiter
// la of contoso's offboard calls, b on cb with lb.
func steppedPair(t *testing.T) (ca, cb *steptest.Clock, a *Shared, la *Limiter, b *Shared, lb *Limiter) {
	t.Helper()
	j := &memJournal{last: map[string]uint64{}}
	ca, cb = steptest.NewClock(t), steptest.NewClock(t)
	const margin = 100 * time.Millisecond
	a, la = j.processWith(t, SharedOptions{Clock: ca, Margin: margin, Lease: 10 * time.Second}, Default())
	b, lb = j.processWith(t, SharedOptions{Clock: cb, Margin: margin, Lease: 10 * time.Second}, Default())
	return ca, cb, a, la, b, lb
}
