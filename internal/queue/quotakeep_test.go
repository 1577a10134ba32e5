package queue

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/zap"

	"github.com/contoso-secops/mde-offboard/internal/limiter"
	"github.com/contoso-secops/mde-offboard/internal/queue/natstest"
	"github.com/contoso-secops/mde-offboard/offboard"
)

// TestQuotaJournalKeepingTooLittleIsRefused: a quota journal whose stream
// keeps its entries less long than the feed must read back (set up by
// hand under --no-setup, or by a replica of a shorter --quota-history)
// has already dropped calls that still count: a process started over it
// forgot them, and called as if the window were empty. The feed refuses
// to start, naming what to raise. (It started, and counted nothing older
// than the stream's max age.)
func TestQuotaJournalKeepingTooLittleIsRefused(t *testing.T) {
	t.Parallel()
	_, js := connect(t)
	s := Settings{Tenants: []string{"contoso"}, QuotaHistory: time.Hour}.WithDefaults()
	if _, err := Ensure(t.Context(), js, s); err != nil {
		t.Fatal(err)
	}
	journal, err := NewQuotaJournal(t.Context(), js, s.Subjects)
	if err != nil {
		t.Fatal(err)
	}
	shared := limiter.NewShared(limiter.SharedOptions{Journal: journal, Lease: 45 * time.Second})
	defer shared.Close(context.Background())
	back := time.Hour + 45*time.Second + 500*time.Millisecond
	stop, err := FollowQuota(t.Context(), js, s.Subjects, shared, back, zap.NewNop())
	if err == nil {
		stop()
		t.Fatal("the feed started over a journal that keeps 1h, want it refused for a back of 1h0m45.5s")
	}
	if !strings.Contains(err.Error(), "1h0m0s") || !strings.Contains(err.Error(), "1h0m45.5s") {
		t.Errorf("error %q: want it to name the journal's max age and the history it must keep", err)
	}
	if shared.CaughtUp() {
		t.Error("caught up over a journal that keeps too little: calls may start")
	}
	// Kept long enough, it starts.
	stop, err = FollowQuota(t.Context(), js, s.Subjects, shared, time.Hour, zap.NewNop())
	if err != nil {
		t.Fatal(err)
	}
	stop()
}

// TestEnsureNeverShortensAJournal: replicas started with different
// --quota-history or --budget-history (a rolling update that changes
// them, one flag forgotten) set up the same journals. One with a shorter
// history must not cut what the others read back: their feeds would miss
// calls and actions that still count, and a restart of theirs would be
// refused. Setup keeps the longer max age, and "none" (0) too.
func TestEnsureNeverShortensAJournal(t *testing.T) {
	t.Parallel()
	_, js := connect(t)
	ctx := t.Context()
	long := Settings{Tenants: []string{"contoso"}, QuotaHistory: 3 * time.Hour, BudgetHistory: 72 * time.Hour}
	if _, err := Ensure(ctx, js, long); err != nil {
		t.Fatal(err)
	}
	short := Settings{Tenants: []string{"contoso"}, QuotaHistory: 2 * time.Hour, BudgetHistory: 48 * time.Hour}
	if _, err := Ensure(ctx, js, short); err != nil {
		t.Fatal(err)
	}
	for name, want := range map[string]time.Duration{offboard.StreamQuota: 3 * time.Hour, offboard.StreamBudget: 72 * time.Hour} {
		stream, err := js.Stream(ctx, name)
		if err != nil {
			t.Fatal(err)
		}
		if got := stream.CachedInfo().Config.MaxAge; got != want {
			t.Errorf("%s keeps %v after a replica of a shorter history set it up, want %v kept", name, got, want)
		}
	}
	// A journal an operator set to keep everything keeps it.
	stream, err := js.Stream(ctx, offboard.StreamQuota)
	if err != nil {
		t.Fatal(err)
	}
	cfg := stream.CachedInfo().Config
	cfg.MaxAge = 0
	if _, err := js.UpdateStream(ctx, cfg); err != nil {
		t.Fatal(err)
	}
	if _, err := Ensure(ctx, js, short); err != nil {
		t.Fatal(err)
	}
	if stream, err = js.Stream(ctx, offboard.StreamQuota); err != nil {
		t.Fatal(err)
	}
	if got := stream.CachedInfo().Config.MaxAge; got != 0 {
		t.Errorf("%s keeps %v after setup, want 0 (everything) kept", offboard.StreamQuota, got)
	}
}

// TestEnsureUpdatesNoJournalItCannotRead: setup keeps a journal's longer
// max age by reading the stream first. A read that fails for another
// reason than a missing stream (a timeout, a leader election, a
// permission) must not let it update blind: the update would set this
// replica's shorter history over the others'.
func TestEnsureUpdatesNoJournalItCannotRead(t *testing.T) {
	t.Parallel()
	url := natstest.StartWithUsers(t,
		&server.User{Username: "admin", Password: "a"},
		&server.User{Username: "setup", Password: "s", Permissions: &server.Permissions{
			Publish: &server.SubjectPermission{
				Allow: []string{">"},
				Deny:  []string{"$JS.API.STREAM.INFO." + offboard.StreamQuota},
			},
		}})
	_, admin := natstest.ConnectTo(t, url, nats.UserInfo("admin", "a"))
	ctx := t.Context()
	long := Settings{Tenants: []string{"contoso"}, QuotaHistory: 3 * time.Hour}
	if _, err := Ensure(ctx, admin, long); err != nil {
		t.Fatal(err)
	}
	// Each request of setup bounded by itself: the read of the stream
	// times out, the update after it would go through.
	nc, _ := natstest.ConnectTo(t, url, nats.UserInfo("setup", "s"))
	js, err := jetstream.New(nc, jetstream.WithDefaultTimeout(time.Second))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Ensure(context.Background(), js, Settings{Tenants: []string{"contoso"}, QuotaHistory: 2 * time.Hour}); err == nil {
		t.Error("setup that could not read the quota journal's stream succeeded, want an error")
	} else {
		t.Log(err)
	}
	stream, err := admin.Stream(ctx, offboard.StreamQuota)
	if err != nil {
		t.Fatal(err)
	}
	if got := stream.CachedInfo().Config.MaxAge; got != 3*time.Hour {
		t.Errorf("%s keeps %v after a setup that could not read it, want 3h kept", offboard.StreamQuota, got)
	}
}
