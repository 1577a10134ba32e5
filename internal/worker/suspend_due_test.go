package worker

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/jonboulle/clockwork"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/contoso-secops/mde-offboard/internal/limiter"
	"github.com/contoso-secops/mde-offboard/internal/limiter/steptest"
	"github.com/contoso-secops/mde-offboard/internal/mde"
	"github.com/contoso-secops/mde-offboard/internal/queue"
	"github.com/contoso-secops/mde-offboard/internal/queue/natstest"
	"github.com/contoso-secops/mde-offboard/offboard"
)

// TestCallNotSentPastItsDueAfterASuspend: the machine is suspended
// between a call's entry in the quota journal and its sending, for
// longer than the call's lease. Its monotonic clock stands still through
// the suspend; its wall clock, and the other replicas', move on, and they
// count the call as ended at its due time. The call must not go out
// after that: the server would count it later than anyone does. Before,
// the call's deadline was read on the monotonic clock alone, and it went
// out a minute past its due time.
func TestCallNotSentPastItsDueAfterASuspend(t *testing.T) {
	t.Parallel()
	clock, lt, _ := contosoFollowed(t)
	l := lt.Add(mde.APIOffboard, []limiter.Window{{Count: 1, Length: time.Hour}})
	c := newCaller(clock, NewMetrics(prometheus.NewRegistry()), RetryPolicy{}, 1)
	p, _ := l.TryAcquire(clock.Now())
	if p == nil {
		t.Fatal("no permit")
	}
	var due time.Time
	enteredThenSuspended := func(ctx context.Context, p *limiter.Permit) (time.Time, error) {
		d, err := p.Record(ctx)
		due = d
		clock.Step(d.Sub(clock.Now()) + time.Minute) // suspended: only the wall clock moves on
		return d, err
	}
	sent := 0
	_, _, err := c.sendChecked(t.Context(), &tenantRun{name: "contoso", limits: lt}, mde.APIOffboard, p,
		func(ctx context.Context) *mde.Verdict {
			if ctx.Err() != nil {
				return &mde.Verdict{Class: mde.Retry} // an ended context sends nothing
			}
			sent++
			return &mde.Verdict{Class: mde.Success, Sent: true}
		}, nil, enteredThenSuspended)
	if sent != 0 {
		t.Errorf("the call went out at %v, a minute after its due time %v in the quota journal", clock.Now(), due)
	}
	if !errors.Is(err, errDueMeanwhile) {
		t.Errorf("sendChecked: %v, want errDueMeanwhile (the request takes a new place)", err)
	}
}

// contosoFollowed is tenant contoso's quota, shared over the quota
// journal of a NATS server of its own (js) and caught up with it, on a
// stepped clock.
func contosoFollowed(t *testing.T) (*steptest.Clock, *limiter.Tenant, jetstream.JetStream) {
	t.Helper()
	_, js := natstest.Connect(t)
	s := queue.Settings{Tenants: []string{"contoso"}}.WithDefaults()
	if _, err := queue.Ensure(t.Context(), js, s); err != nil {
		t.Fatal(err)
	}
	clock := steptest.NewClock(t)
	return clock, followedQuota(t, js, s, clock).Tenant("contoso"), js
}

// followedQuota is a process's shared quota over the quota journal in
// js, on clock, caught up with the journal.
func followedQuota(t *testing.T, js jetstream.JetStream, s queue.Settings, clock clockwork.Clock) *limiter.Shared {
	t.Helper()
	qj, err := queue.NewQuotaJournal(t.Context(), js, s.Subjects)
	if err != nil {
		t.Fatal(err)
	}
	shared := limiter.NewShared(limiter.SharedOptions{Journal: qj, Clock: clock, Margin: 500 * time.Millisecond, Lease: 45 * time.Second})
	followJournal(t, js, s.Subjects, shared, false)
	return shared
}

// followJournal has shared follow its journal in js (the budget journal
// if budget, else the quota journal) until the test ends, and returns
// once it has caught up; shared is closed at the end, within 10 s. Its
// Wall must be the real clock where its Clock is a fake one: the feed
// measures it against the server's stamps.
// A process that does not follow its journal cannot get past an entry
// stored whose answer was lost (the server slow to answer, as on a
// loaded machine): its next write meets that entry as a conflict, and
// waits for the feed to bring it for ever.
func followJournal(t *testing.T, js jetstream.JetStream, subjects offboard.Subjects, shared *limiter.Shared, budget bool) {
	t.Helper()
	closeShared := func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		shared.Close(ctx)
	}
	follow, back := queue.FollowQuota, time.Hour+46*time.Second
	if budget {
		follow, back = queue.FollowBudget, queue.DefaultBudgetHistory
	}
	stop, err := follow(t.Context(), js, subjects, shared, back, zap.NewNop())
	if err != nil {
		closeShared()
		t.Fatal(err)
	}
	// Closed before its feed stops, as a worker does: a last write that
	// meets a conflict waits for the feed.
	t.Cleanup(stop)
	t.Cleanup(closeShared)
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	if err := shared.WaitCaughtUp(ctx); err != nil {
		t.Fatal(err)
	}
}
