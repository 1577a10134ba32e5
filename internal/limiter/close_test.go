package limiter

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jonboulle/clockwork"

	"github.com/contoso-secops/mde-offboard/internal/testwait"
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

// TestSharedCloseKeepsToItsContext: a call's entry is being written (its
// journal does not answer) and holds the tenant's writes; a 429's pause
// waits to be written behind it. Close, given 300 ms, returns within its
// context, leaving the pause to its lease. Before, it waited for the
// pause's writer, which waited for the call's entry, for as long as that
// took: a worker's shutdown held past its grace.
func TestSharedCloseKeepsToItsContext(t *testing.T) {
	clock := clockwork.NewFakeClockAt(epoch)
	j := &stalledJournal{mem: &memJournal{last: map[string]uint64{}}, started: make(chan struct{}, 1)}
	s := NewShared(SharedOptions{Journal: j, Clock: clock, Lease: 10 * time.Second})
	s.MarkCaughtUp(0)
	tn := s.Tenant("contoso")
	l := tn.Add("offboard", []Window{{Count: 10, Length: time.Minute}})

	p, _ := l.TryAcquire(clock.Now())
	callCtx, endCall := context.WithCancel(context.Background())
	recorded := make(chan error, 1)
	go func() { _, err := p.Record(callCtx); recorded <- err }()
	testwait.For(t, j.started, 5*time.Second, "the call's entry being written")
	tn.Pause(clock.Now(), time.Minute) // its writer waits for the call's entry

	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	start := time.Now()
	closed := make(chan struct{})
	go func() { s.Close(ctx); close(closed) }()
	select {
	case <-closed:
	case <-time.After(5 * time.Second):
	}
	took := time.Since(start)
	endCall() // the call's entry fails: the writes go on, and end
	testwait.For(t, recorded, 5*time.Second, "the call's Record to return")
	testwait.For(t, closed, 5*time.Second, "Close to return")
	if took > 2*time.Second {
		t.Fatalf("Close given 300ms returned after %v, once the call's entry was given up", took.Round(time.Millisecond))
	}
}
