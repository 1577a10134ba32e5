package limiter

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jonboulle/clockwork"
)

// stalledJournal is a journal server that does not answer: an Append
// waits for its context and fails with its error (as QuotaJournal's
// js.Publish does), until answer is set.
type stalledJournal struct {
	mem     *memJournal
	started chan struct{}
	answer  atomic.Bool
	appends atomic.Int64
}

func (j *stalledJournal) Append(ctx context.Context, tenant string, ev Event, last uint64) (uint64, error) {
	j.appends.Add(1)
	if j.answer.Load() {
		return j.mem.Append(ctx, tenant, ev, last)
	}
	select {
	case j.started <- struct{}{}:
	default:
	}
	<-ctx.Done()
	return 0, ctx.Err()
}

// TestSharedCloseWithAPauseBeingWritten: a pause is being written when
// Close begins; Close cancels the writers' context and the write fails
// with it. The writer must stop there (Close writes what is pending), not
// put the pause back and try again at once for ever while Close waits.
func TestSharedCloseWithAPauseBeingWritten(t *testing.T) {
	clock := clockwork.NewFakeClockAt(epoch)
	j := &stalledJournal{mem: &memJournal{last: map[string]uint64{}}, started: make(chan struct{}, 1)}
	s := NewShared(SharedOptions{Journal: j, Clock: clock, Lease: 10 * time.Second, EndsLinger: time.Millisecond})
	s.MarkCaughtUp(0)
	tn := s.Tenant("contoso")
	tn.Add("offboard", []Window{{Count: 10, Length: time.Minute}})

	tn.Pause(clock.Now(), time.Minute) // a 429: the writer starts and writes the pause
	select {
	case <-j.started:
	case <-time.After(5 * time.Second):
		t.Fatal("the pause's write did not start")
	}

	closed := make(chan struct{})
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
		defer cancel()
		s.Close(ctx) // best effort within 500ms
		close(closed)
	}()
	select {
	case <-closed:
	case <-time.After(5 * time.Second):
		n := j.appends.Load()
		time.Sleep(100 * time.Millisecond)
		spin := j.appends.Load() - n
		j.answer.Store(true) // let the writer end, and Close with it
		<-closed
		t.Fatalf("Close did not return within 5s (its ctx: 500ms); the stopped writer made %d Appends in 100ms", spin)
	}
}

// ctxJournal is a memJournal that, like js.Publish, fails once its
// context has ended.
type ctxJournal struct {
	mem     *memJournal
	appends atomic.Int64
	lenient atomic.Bool // ignore the context from now on
}

func (j *ctxJournal) Append(ctx context.Context, tenant string, ev Event, last uint64) (uint64, error) {
	j.appends.Add(1)
	if err := ctx.Err(); err != nil && !j.lenient.Load() {
		return 0, err
	}
	return j.mem.Append(ctx, tenant, ev, last)
}

// TestSharedCloseRightAfterAPause: a 429 pauses the tenant just as the
// process stops, over a journal that answers at once but fails on an ended
// context (as js.Publish does). The writer the pause starts may first run
// after Close cancelled its context: it must stop, and Close return.
func TestSharedCloseRightAfterAPause(t *testing.T) {
	hung := 0
	for range 20 {
		clock := clockwork.NewFakeClockAt(epoch)
		j := &ctxJournal{mem: &memJournal{last: map[string]uint64{}}}
		s := NewShared(SharedOptions{Journal: j, Clock: clock, Lease: 10 * time.Second})
		s.MarkCaughtUp(0)
		tn := s.Tenant("contoso")
		tn.Add("offboard", []Window{{Count: 10, Length: time.Minute}})
		tn.Pause(clock.Now(), time.Minute)
		closed := make(chan struct{})
		go func() { s.Close(context.Background()); close(closed) }()
		select {
		case <-closed:
		case <-time.After(2 * time.Second):
			hung++
			// Let the spinning writer go: the pause's write succeeds.
			j.lenient.Store(true)
			<-closed
		}
	}
	if hung > 0 {
		t.Errorf("Close hung in %d of 20 shutdowns right after a pause", hung)
	}
}
