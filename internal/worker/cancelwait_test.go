package worker

import (
	"testing"
	"time"

	"github.com/contoso-secops/mde-offboard/offboard"
)

// noResultFor fails the test if a result comes within half a second;
// what says why it must not.
func (e *loopEnv) noResultFor(t *testing.T, what string) {
	t.Helper()
	select {
	case r := <-e.results:
		t.Errorf("result %s %s %+v %s", r.RequestID, r.Outcome, r.Error, what)
	case <-time.After(500 * time.Millisecond):
	}
}

// cancelledOnTheFakeClock waits up to 20 s for request id's result,
// which must be cancelled, moving the fake clock on a second every 10 ms
// (a backoff, a wait for quota); only the one call answered 503 must
// have gone out. waiting says what the request waits for when no result
// comes.
func (e *loopEnv) cancelledOnTheFakeClock(t *testing.T, id, waiting string) {
	t.Helper()
	start := time.Now()
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	deadline := time.After(20 * time.Second)
	for {
		select {
		case r := <-e.results:
			if r.RequestID != id || r.Error == nil || r.Error.Code != offboard.CodeCancelled {
				t.Errorf("result %s %s %+v, want %s cancelled", r.RequestID, r.Outcome, r.Error, id)
			}
			if n := e.offboardCalls(); n != 1 {
				t.Errorf("%d offboard calls, want only the one answered 503", n)
			}
			return
		case <-tick.C:
			e.clock.Advance(time.Second)
		case <-deadline:
			t.Fatalf("no result %v after the cancel: %s", time.Since(start).Round(time.Second), waiting)
		}
	}
}
