package queue

import (
	"context"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"github.com/jonboulle/clockwork"
	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/zap"

	"github.com/contoso-secops/mde-offboard/internal/limiter"
)

// quotaCall is one call as the API could see it: counted at any moment
// between sent and answered.
type quotaCall struct {
	sent, answered time.Time
	replica        int
}

// quotaReplica is one worker process's quota: its own view of the journal
// and a few goroutines making calls as fast as it allows.
type quotaReplica struct {
	id     int
	shared *limiter.Shared
	tenant *limiter.Tenant
	cancel context.CancelFunc
	calls  sync.WaitGroup
	follow func()
}

type quotaRig struct {
	t       *testing.T
	js      jetstream.JetStream
	s       Settings
	clock   *clockwork.FakeClock
	windows []limiter.Window
	lease   time.Duration

	mu    sync.Mutex
	calls []quotaCall
}

func (r *quotaRig) record(c quotaCall) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.calls = append(r.calls, c)
}

// start starts a replica with a fresh view of the journal, as a new process
// would.
func (r *quotaRig) start(id int) *quotaReplica {
	r.t.Helper()
	journal, err := NewQuotaJournal(r.t.Context(), r.js, r.s.Subjects)
	if err != nil {
		r.t.Fatal(err)
	}
	shared := limiter.NewShared(limiter.SharedOptions{Journal: journal, Clock: r.clock, Lease: r.lease})
	tn := shared.Tenant("contoso")
	l := tn.Add("offboard", r.windows)
	follow, err := FollowQuota(r.t.Context(), r.js, r.s.Subjects, shared, time.Hour, zap.NewNop())
	if err != nil {
		r.t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	rp := &quotaReplica{id: id, shared: shared, tenant: tn, cancel: cancel, follow: follow}
	for range 3 {
		rp.calls.Go(func() {
			for {
				p, err := l.Acquire(ctx)
				if err != nil {
					return
				}
				due, err := p.Record(ctx)
				if err != nil {
					p.Release()
					return
				}
				sent := r.clock.Now()
				select {
				case <-r.clock.After(time.Duration(rand.IntN(3)) * 20 * time.Millisecond):
				case <-ctx.Done():
					// Killed with the call under way: its answer may come
					// at any time until it is due.
					r.record(quotaCall{sent: sent, answered: due, replica: id})
					return
				}
				answered := r.clock.Now()
				p.Complete(answered)
				r.record(quotaCall{sent: sent, answered: answered, replica: id})
			}
		})
	}
	return rp
}

// kill stops the replica as SIGKILL would: calls under way never end.
func (rp *quotaReplica) kill() {
	rp.cancel()
	rp.calls.Wait()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	rp.shared.Close(ctx) // ends of calls that did end may have been written
	rp.follow()
}

// worst is the largest number of calls the API could have counted in one
// window: the calls sharing a moment with (t-Length, t] for some t.
func worst(calls []quotaCall, w limiter.Window) (n int, at time.Time) {
	for _, c := range calls {
		// Windows ending at c.sent: every call sent by then and answered
		// after c.sent-Length falls in (c.sent-Length, c.sent].
		k := 0
		for _, o := range calls {
			if !o.sent.After(c.sent) && o.answered.After(c.sent.Add(-w.Length)) {
				k++
			}
		}
		if k > n {
			n, at = k, c.sent
		}
	}
	return n, at
}

// TestSharedQuotaHoldsAcrossReplicasAndRestarts runs several replicas'
// limiters against one JetStream journal under a fake clock, kills two of
// them mid-call and starts new ones, and pauses the tenant from one: no
// window the API could draw ever holds more calls than its count, and no
// replica calls during the pause.
func TestSharedQuotaHoldsAcrossReplicasAndRestarts(t *testing.T) {
	t.Parallel()
	_, js := connect(t)
	s := Settings{Tenants: []string{"contoso"}}.WithDefaults()
	if _, err := Ensure(t.Context(), js, s); err != nil {
		t.Fatal(err)
	}
	epoch := time.Date(2026, 11, 24, 0, 0, 0, 0, time.UTC)
	r := &quotaRig{
		t: t, js: js, s: s, clock: clockwork.NewFakeClockAt(epoch),
		// The short window binds: calls flow all the time, so a replica
		// that ignored the others or the pause would show.
		windows: []limiter.Window{{Count: 5, Length: time.Second}, {Count: 60, Length: 10 * time.Second}},
		lease:   2 * time.Second,
	}
	replicas := []*quotaReplica{r.start(0), r.start(1), r.start(2)}
	defer func() {
		for _, rp := range replicas {
			rp.kill()
		}
	}()

	const step = 20 * time.Millisecond
	var pausedAt time.Time
	const pause = 2 * time.Second
	for i := range 2000 {
		switch i {
		case 600: // a replica dies mid-call; a new process takes its place
			replicas[1].kill()
			replicas[1] = r.start(3)
		case 1000: // a 429 seen by one replica pauses them all
			pausedAt = r.clock.Now()
			replicas[2].tenant.Pause(pausedAt, pause)
			time.Sleep(100 * time.Millisecond) // the entry reaches the others
		case 1400:
			replicas[0].kill()
			replicas[0] = r.start(4)
		}
		r.clock.Advance(step)
		time.Sleep(500 * time.Microsecond)
	}
	for _, rp := range replicas {
		rp.kill()
	}
	replicas = nil

	r.mu.Lock()
	defer r.mu.Unlock()
	perReplica := map[int]int{}
	for _, c := range r.calls {
		perReplica[c.replica]++
		if c.sent.After(pausedAt.Add(5*step)) && c.sent.Before(pausedAt.Add(pause)) {
			t.Errorf("replica %d called at %v, inside the pause from %v to %v", c.replica, c.sent.Sub(epoch), pausedAt.Sub(epoch), pausedAt.Add(pause).Sub(epoch))
		}
	}
	for _, w := range r.windows {
		if n, at := worst(r.calls, w); n > w.Count {
			t.Errorf("window %v: the API could count %d calls in the window ending at %v", w, n, at.Sub(epoch))
		}
	}
	// The run only proves something if the replicas shared the work and
	// the windows were kept full.
	if len(perReplica) < 5 {
		t.Errorf("calls by %d replicas, want all 5 to have called: %v", len(perReplica), perReplica)
	}
	if min5 := 5 * 30; len(r.calls) < min5 {
		t.Errorf("%d calls in 40 simulated seconds, want at least %d (the window allows 5 a second)", len(r.calls), min5)
	}
	t.Logf("%d calls by replica: %v", len(r.calls), perReplica)
}

// TestQuotaFeedCatchesUpWithAnEmptiedJournal: after `nats stream purge`,
// or with the journal's last entry deleted, no entry numbered the stream's
// last sequence will ever come; a new process must still become ready.
func TestQuotaFeedCatchesUpWithAnEmptiedJournal(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name  string
		empty func(ctx context.Context, st jetstream.Stream, last uint64) error
	}{
		{"purged", func(ctx context.Context, st jetstream.Stream, _ uint64) error { return st.Purge(ctx) }},
		{"last deleted", func(ctx context.Context, st jetstream.Stream, last uint64) error { return st.DeleteMsg(ctx, last) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			_, js := connect(t)
			s := Settings{Tenants: []string{"contoso"}}.WithDefaults()
			if _, err := Ensure(t.Context(), js, s); err != nil {
				t.Fatal(err)
			}
			var last uint64
			for range 3 {
				ack, err := js.Publish(t.Context(), s.Subjects.Quota("contoso"), []byte(`{"w":"gone","done":[{"api":"offboard","id":1,"at":1}]}`))
				if err != nil {
					t.Fatal(err)
				}
				last = ack.Sequence
			}
			st, err := js.Stream(t.Context(), StreamQuota)
			if err != nil {
				t.Fatal(err)
			}
			if err := tc.empty(t.Context(), st, last); err != nil {
				t.Fatal(err)
			}
			journal, err := NewQuotaJournal(t.Context(), js, s.Subjects)
			if err != nil {
				t.Fatal(err)
			}
			shared := limiter.NewShared(limiter.SharedOptions{Journal: journal, Lease: time.Second})
			defer shared.Close(context.Background())
			stop, err := FollowQuota(t.Context(), js, s.Subjects, shared, time.Hour, zap.NewNop())
			if err != nil {
				t.Fatal(err)
			}
			defer stop()
			ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second) // real time: a bound, not a measure
			defer cancel()
			if err := shared.WaitCaughtUp(ctx); err != nil {
				t.Fatalf("the feed never caught up with the %s journal: %v", tc.name, err)
			}
		})
	}
}
