package worker

import (
	"context"
	"testing"
	"time"

	"github.com/jonboulle/clockwork"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/contoso-secops/mde-offboard/internal/limiter"
	"github.com/contoso-secops/mde-offboard/internal/mde"
	"github.com/contoso-secops/mde-offboard/internal/queue"
)

// TestThrottledUntilAfterARestart: a 429's one-minute pause is in the
// quota journal, and the worker starts again two minutes later, the
// pause over. mde_offboard_throttled_until_timestamp_seconds shows the
// pause's end, as the replica that met the 429 did: the backlog alert
// leaves the tenant out for 15 minutes after a pause, while its requests
// start moving again. Before, a worker started after the pause's end
// showed 0, and a restart in those 15 minutes (a rollout, an eviction)
// paged for the API's own pause.
func TestThrottledUntilAfterARestart(t *testing.T) {
	t.Parallel()
	var pauseEnd time.Time
	e := setupLoopOpts(t, `["100/1m"]`, "", RetryPolicy{}, func(o *Options) {
		clock := o.Clock.(*clockwork.FakeClock)
		// The process before the restart: it met the 429 and wrote the
		// pause.
		qj, err := queue.NewQuotaJournal(t.Context(), o.JS, o.Settings.Subjects)
		if err != nil {
			t.Fatal(err)
		}
		before := limiter.NewShared(limiter.SharedOptions{Journal: qj, Clock: clock, Lease: time.Minute})
		tn := before.Tenant("contoso")
		tn.Add(mde.APIOffboard, limiter.Default())
		followJournal(t, o.JS, o.Settings.Subjects, before, false)
		tn.Pause(clock.Now(), time.Minute)
		pauseEnd = tn.PausedUntil()
		ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
		defer cancel()
		if err := tn.Flush(ctx); err != nil {
			t.Fatal(err)
		}
		clock.Advance(2 * time.Minute)
		// The process after it, reading the journal.
		again, err := queue.NewQuotaJournal(t.Context(), o.JS, o.Settings.Subjects)
		if err != nil {
			t.Fatal(err)
		}
		o.Shared = limiter.NewShared(limiter.SharedOptions{Journal: again, Clock: clock, Lease: time.Minute})
		// Its tenants are known before it reads the journal, as the
		// worker's are when the app follows the journal.
		o.Shared.Tenant("contoso").Add(mde.APIOffboard, limiter.Default())
		followJournal(t, o.JS, o.Settings.Subjects, o.Shared, false)
		o.StatsEvery = time.Second
	})
	gauge := e.w.m.ThrottledUntil.WithLabelValues("contoso")
	want := float64(pauseEnd.UnixNano()) / 1e9
	for deadline := time.Now().Add(3 * time.Second); time.Now().Before(deadline); {
		if got := testutil.ToFloat64(gauge); got > want-2 && got < want+2 {
			return
		}
		e.clock.Advance(time.Second)
		time.Sleep(10 * time.Millisecond)
	}
	t.Errorf("mde_offboard_throttled_until_timestamp_seconds %v after the restart, want the pause's end %v", testutil.ToFloat64(gauge), want)
}
