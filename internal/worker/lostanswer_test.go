package worker

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jonboulle/clockwork"

	"github.com/contoso-secops/mde-offboard/internal/limiter"
	"github.com/contoso-secops/mde-offboard/internal/queue"
)

// quotaAnswerLost is a journal whose first entry is stored but answered with
// a timeout, as a server too slow to answer within a step's bound.
type quotaAnswerLost struct {
	limiter.Journal
	lost atomic.Bool
}

func (j *quotaAnswerLost) Append(ctx context.Context, tenant string, ev limiter.Event, last uint64) (uint64, error) {
	seq, err := j.Journal.Append(ctx, tenant, ev, last)
	if err == nil && j.lost.CompareAndSwap(false, true) {
		return 0, context.DeadlineExceeded
	}
	return seq, err
}

// TestQuotaEntryWhoseAnswerWasLost: the quota journal stores the entry
// of a request's call but its answer is lost. The request's next write
// meets that entry as a conflict, the feed brings it, and the call goes
// out: one action, the request created.
func TestQuotaEntryWhoseAnswerWasLost(t *testing.T) {
	t.Parallel()
	journal := &quotaAnswerLost{}
	e := setupLoopOpts(t, `["100/1m"]`, "", RetryPolicy{}, func(o *Options) {
		qj, err := queue.NewQuotaJournal(t.Context(), o.JS, o.Settings.Subjects)
		if err != nil {
			t.Fatal(err)
		}
		journal.Journal = qj
		shared := limiter.NewShared(limiter.SharedOptions{Journal: journal, Clock: o.Clock, Lease: time.Minute,
			Margin: time.Second, Wall: clockwork.NewRealClock()})
		followJournal(t, o.JS, o.Settings.Subjects, shared, false)
		o.Shared = shared
	})
	e.publish(t, "r-1")
	e.wantCreated(t, "r-1")
	if !journal.lost.Load() {
		t.Fatal("no entry's answer was lost")
	}
	if n := len(e.sim.Actions(loopTenantID)); n != 1 {
		t.Errorf("%d actions, want 1", n)
	}
}
