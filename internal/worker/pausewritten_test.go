package worker

import (
	"context"
	"errors"
	"net/http"
	"testing"
	"time"

	"github.com/jonboulle/clockwork"
	"go.uber.org/zap"

	"github.com/contoso-secops/mde-offboard/internal/limiter"
	"github.com/contoso-secops/mde-offboard/internal/mde"
	"github.com/contoso-secops/mde-offboard/internal/queue"
	"github.com/contoso-secops/mde-offboard/offboard"
)

// slowPauseJournal is a quota journal whose entries that carry a pause
// take a while to be stored; once the process is killed, nothing it
// writes is stored any more.
type slowPauseJournal struct {
	limiter.Journal
	killed chan struct{}
}

var errKilled = errors.New("the process was killed")

func (j *slowPauseJournal) Append(ctx context.Context, tenant string, ev limiter.Event, last uint64) (uint64, error) {
	if ev.Paused != 0 {
		select {
		case <-j.killed:
			return 0, errKilled
		case <-time.After(300 * time.Millisecond): // real time: the server's answer on its way
		}
	}
	select {
	case <-j.killed:
		return 0, errKilled
	default:
	}
	return j.Journal.Append(ctx, tenant, ev, last)
}

// TestThrottlePauseWrittenBeforeTheAnswer: a request's last 429 (Retry-After
// an hour) fails it, and the worker is killed as soon as its result is
// out. The pause must already be in the quota journal then: a restarted
// worker, or another replica, reading the journal is paused for the hour.
// Before, the pause went to the journal on its own, after the 429, and a
// worker killed before that write left it to its memory alone: its restart
// called into the throttling again.
func TestThrottlePauseWrittenBeforeTheAnswer(t *testing.T) {
	t.Parallel()
	var journal *slowPauseJournal
	var shared *limiter.Shared
	var settings queue.Settings
	e := setupLoopOpts(t, `["100/1m"]`, "", RetryPolicy{Throttles: 1}, func(o *Options) {
		qj, err := queue.NewQuotaJournal(t.Context(), o.JS, o.Settings.Subjects)
		if err != nil {
			t.Fatal(err)
		}
		journal = &slowPauseJournal{Journal: qj, killed: make(chan struct{})}
		shared = limiter.NewShared(limiter.SharedOptions{Journal: journal, Clock: o.Clock, Lease: time.Minute,
			Margin: time.Second, Wall: clockwork.NewRealClock()})
		followJournal(t, o.JS, o.Settings.Subjects, shared, false)
		o.Shared, settings = shared, o.Settings
	})
	e.sim.InjectStatus(loopTenantID, mde.APIOffboard, http.StatusTooManyRequests, "429",
		"API calls quota exceeded! maximum allowed 100 per 00:01:00", 1, time.Hour)
	throttledAt := e.clock.Now()
	e.publish(t, "r-1")
	select {
	case r := <-e.results:
		close(journal.killed) // killed right after the answer
		if r.Outcome != offboard.OutcomeFailed || r.Error == nil || r.Error.Code != offboard.CodeAPIError {
			t.Fatalf("result %s %+v, want failed api_error", r.Outcome, r.Error)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("no result for r-1")
	}

	// The worker started again: a new process reads the journal.
	qj, err := queue.NewQuotaJournal(t.Context(), e.js, settings.Subjects)
	if err != nil {
		t.Fatal(err)
	}
	again := limiter.NewShared(limiter.SharedOptions{Journal: qj, Clock: e.clock, Lease: time.Minute})
	defer again.Close(context.Background())
	tn := again.Tenant("contoso")
	tn.Add(mde.APIOffboard, limiter.Default())
	stop, err := queue.FollowQuota(t.Context(), e.js, settings.Subjects, again, 2*time.Hour, zap.NewNop())
	if err != nil {
		t.Fatal(err)
	}
	defer stop()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	if err := again.WaitCaughtUp(ctx); err != nil {
		t.Fatal(err)
	}
	if until := tn.PausedUntil(); until.Before(throttledAt.Add(59 * time.Minute)) {
		t.Errorf("the restarted worker is paused until %v, want the 429's hour from %v", until, throttledAt)
	}
}
