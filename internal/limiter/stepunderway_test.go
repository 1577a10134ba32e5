package limiter

import (
	"testing"
	"time"
)

// TestStepDuringAnotherReplicasCallCountsItOnce: another replica's call
// is under way when this process's clock is stepped two hours forward;
// the quota gauges are read by the stepped clock, which finds the call
// overdue and counts it from its due time. Its end then comes, the clock
// is set right and measured: the call counts once in the hour. Before,
// the reading by the stepped clock also forgot that the call was counted
// already, and its end counted it a second time: a place of the hour
// lost for an hour.
func TestStepDuringAnotherReplicasCallCountsItOnce(t *testing.T) {
	_, cb, a, la, b, lb := steppedPair(t)
	probe(b)
	p := call(t, la)
	cb.Step(2 * time.Hour)
	lb.Remaining(cb.Now()) // the gauges, by the stepped clock
	p.CompleteNow()
	flush(t, a)
	lb.Remaining(cb.Now())
	cb.Step(-2 * time.Hour)
	b.LookAtClock()
	probe(b)
	if err := b.Healthy(); err != nil {
		t.Fatal(err)
	}
	if got := lb.Remaining(cb.Now()); got[1] != 1499 {
		t.Errorf("remaining in the hour %v, want 1499: the other replica's one call", got)
	}
}
