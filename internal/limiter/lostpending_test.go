package limiter

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/jonboulle/clockwork"
)

// lostAnswers is a journal that stores every entry and loses every
// answer: each Append times out after the entry was stored.
type lostAnswers struct{ *memJournal }

func (j lostAnswers) Append(ctx context.Context, tenant string, ev Event, last uint64) (uint64, error) {
	if _, err := j.memJournal.Append(ctx, tenant, ev, last); err != nil {
		return 0, err
	}
	return 0, context.DeadlineExceeded
}

// TestLostAnswersGatherNoEndsPastTheirDue: the quota journal stores the
// entries but its answers are lost (its stream's leader lost, a slow
// server), for hours, while requests come back every few seconds. Each
// entry may have been stored, so the end of its call (never sent) is
// written after it, with the next entry: that end lets the others forget
// the call before its due time, and past its due time it tells them
// nothing they do not count already. Before, every end stayed pending
// until one entry was stored with an answer: one more for each request
// that came back, so that after a few hours the entry carrying them all
// was larger than NATS takes, refused for good, and the tenant made no
// call again until the worker was restarted.
func TestLostAnswersGatherNoEndsPastTheirDue(t *testing.T) {
	t.Parallel()
	clock := clockwork.NewFakeClockAt(epoch)
	j := &memJournal{last: map[string]uint64{}}
	const lease = 10 * time.Second
	a, la := j.processThrough(t, lostAnswers{j}, SharedOptions{Clock: clock, Lease: lease, EndsLinger: time.Hour},
		[]Window{{Count: 100, Length: time.Minute}})
	tn := a.Tenant("contoso")
	const attempts = 500
	for range attempts {
		p, _ := la.TryAcquire(clock.Now())
		if p == nil {
			t.Fatal("no permit")
		}
		if _, err := p.Record(t.Context()); !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("record: %v, want its answer lost", err)
		}
		p.Release()
		clock.Advance(lease + time.Second) // the request comes back after the call's due time
	}
	tn.wmu.Lock() // no write has taken what is pending
	defer tn.wmu.Unlock()
	tn.mu.Lock()
	defer tn.mu.Unlock()
	if n := len(tn.pending.Done); n > 1 {
		t.Errorf("%d call ends pending after %d entries whose answers were lost, each a lease apart: want at most the last one's", n, attempts)
	}
}
