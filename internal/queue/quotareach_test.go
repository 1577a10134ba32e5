package queue

import (
	"context"
	"testing"
	"time"

	"github.com/jonboulle/clockwork"
	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/zap"

	"github.com/contoso-secops/mde-offboard/internal/limiter"
	"github.com/contoso-secops/mde-offboard/offboard"
)

// TestRestartWithAShorterLeaseCountsALongerLeasesCall: a process whose
// lease is 1.5 s (a longer --call-timeout) entered a call and was killed
// before its end was written; the others count it as answered at its due
// time, 1.5 s on, and keep it in the window of one call per 2 s until
// 3.5 s on. A process started 2.5 s after the entry with a lease of
// 100 ms reads the journal back its window, its own lease and the margin,
// 2.15 s, which alone misses the entry: it called in a window the API
// had filled. It counts it. (In the worker, with the hour's window, a
// process with a 1 h lease killed mid-call, and one with the default
// 45 s started 90 minutes later.)
func TestRestartWithAShorterLeaseCountsALongerLeasesCall(t *testing.T) {
	t.Parallel()
	js, s := contosoQueue(t)
	journal, err := NewQuotaJournal(t.Context(), js, s.Subjects)
	if err != nil {
		t.Fatal(err)
	}
	entered := time.Now()
	ev := limiter.Event{Writer: "long-lease", Written: entered.UnixNano(),
		Reserved: []limiter.Call{{API: "offboard", ID: 1, At: entered.Add(1500 * time.Millisecond).UnixNano()}}}
	if _, err := journal.Append(t.Context(), "contoso", ev, 0); err != nil {
		t.Fatal(err)
	}
	// Real time: the server stamps the entry, and the feed reads back
	// from its stamp of the new process's probe.
	time.Sleep(2500 * time.Millisecond)

	const lease, margin = 100 * time.Millisecond, 50 * time.Millisecond
	window := limiter.Window{Count: 1, Length: 2 * time.Second}
	clock := clockwork.NewRealClock()
	shared := limiter.NewShared(limiter.SharedOptions{Journal: journal, Clock: clock, Lease: lease, Margin: margin})
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		shared.Close(ctx)
	})
	l := shared.Tenant("contoso").Add("offboard", []limiter.Window{window})
	followCaughtUp(t, js, s.Subjects, shared, window.Length+lease+margin)
	if now := clock.Now(); now.After(entered.Add(3 * time.Second)) {
		t.Skip("the machine is too slow: the call nearly left the window before the new process read the journal")
	}
	if got := l.Remaining(clock.Now()); got[0] != 0 {
		t.Errorf("remaining %v, want [0]: the call entered with a 1.5 s lease 2.5 s ago is in the window until 3.5 s", got)
	}
}

// followCaughtUp has shared follow the quota journal back reach (as
// FollowQuota) until the test ends, and returns once it has caught up,
// within 10 s of real time.
func followCaughtUp(t *testing.T, js jetstream.JetStream, subjects offboard.Subjects, shared *limiter.Shared, reach time.Duration) {
	t.Helper()
	stop, err := FollowQuota(t.Context(), js, subjects, shared, reach, zap.NewNop())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(stop)
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	if err := shared.WaitCaughtUp(ctx); err != nil {
		t.Fatalf("the feed never caught up with the journal: %v", err)
	}
}
