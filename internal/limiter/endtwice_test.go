package limiter

import (
	"context"
	"testing"
	"time"

	"github.com/jonboulle/clockwork"
)

// loseAnswers is a journal that stores every entry and, while lose is
// set, loses the answer: the Append times out after the entry was stored.
type loseAnswers struct {
	*memJournal
	lose bool
}

func (j *loseAnswers) Append(ctx context.Context, tenant string, ev Event, last uint64) (uint64, error) {
	seq, err := j.memJournal.Append(ctx, tenant, ev, last)
	if err == nil && j.lose {
		return 0, context.DeadlineExceeded
	}
	return seq, err
}

// TestEndStoredWithItsAnswerLostCountsOnce: the entry with the ends of a
// process's calls is stored but its answer lost (a timeout), and the
// process writes the ends again. Another replica counts each call once.
// Before, it counted each twice, once for each entry: after a few answers
// lost, a tenant's windows held, for the other replicas, calls never
// made, up to an hour long.
func TestEndStoredWithItsAnswerLostCountsOnce(t *testing.T) {
	t.Parallel()
	clock := clockwork.NewFakeClockAt(epoch)
	j := &memJournal{last: map[string]uint64{}}
	w := &loseAnswers{memJournal: j}
	ws := []Window{{Count: 10, Length: time.Minute}}
	a, la := j.processThrough(t, w, SharedOptions{Clock: clock, Lease: 10 * time.Second, EndsLinger: time.Hour}, ws)
	_, lb := j.process(t, clock, 0, 10*time.Second, ws)
	tn := a.Tenant("contoso")

	const calls = 3
	for range calls {
		call(t, la).CompleteNow()
	}
	w.lose = true
	if err := tn.Flush(t.Context()); err == nil {
		t.Fatal("the ends' answer was lost, and Flush says they are stored")
	}
	w.lose = false
	flush(t, a)
	if got := lb.Remaining(clock.Now()); got[0] != 10-calls {
		t.Errorf("the other replica has %d of 10 left after %d calls, want %d", got[0], calls, 10-calls)
	}
}
