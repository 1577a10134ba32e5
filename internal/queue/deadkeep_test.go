package queue

import (
	"testing"
	"time"

	"github.com/contoso-secops/mde-offboard/offboard"
)

// TestEnsureKeepsTheDeadLettersMaxAge: no flag sets how long dead letters
// are kept; an operator who must not keep device ids and host names for
// ever sets a max age on MDE_OFFBOARD_DEAD with the nats CLI (README,
// Security: Retention). Setup keeps it, as it keeps the journals' longer
// history. (It set the stream back to keep everything at every start.)
func TestEnsureKeepsTheDeadLettersMaxAge(t *testing.T) {
	t.Parallel()
	_, js := connect(t)
	ctx := t.Context()
	s := Settings{Tenants: []string{"contoso"}}
	if _, err := Ensure(ctx, js, s); err != nil {
		t.Fatal(err)
	}
	maxAge := func() time.Duration {
		t.Helper()
		stream, err := js.Stream(ctx, offboard.StreamDead)
		if err != nil {
			t.Fatal(err)
		}
		return stream.CachedInfo().Config.MaxAge
	}
	stream, err := js.Stream(ctx, offboard.StreamDead)
	if err != nil {
		t.Fatal(err)
	}
	cfg := stream.CachedInfo().Config
	cfg.MaxAge = 30 * 24 * time.Hour
	if _, err := js.UpdateStream(ctx, cfg); err != nil {
		t.Fatal(err)
	}
	for start := range 2 {
		if _, err := Ensure(ctx, js, s); err != nil {
			t.Fatal(err)
		}
		if got := maxAge(); got != cfg.MaxAge {
			t.Errorf("start %d: %s keeps its dead letters %v, want the %v an operator set", start+1, offboard.StreamDead, got, cfg.MaxAge)
		}
	}
	// One under the worker's duplicate window, which the server refuses
	// beside it, is raised to the window: the start goes on.
	cfg.MaxAge, cfg.Duplicates = 12*time.Hour, 12*time.Hour
	if _, err := js.UpdateStream(ctx, cfg); err != nil {
		t.Fatal(err)
	}
	if _, err := Ensure(ctx, js, s); err != nil {
		t.Fatalf("setup over a dead-letter stream keeping 12h: %v", err)
	}
	if got, want := maxAge(), s.WithDefaults().Duplicates; got != want {
		t.Errorf("%s keeps its dead letters %v, want %v (the duplicate window)", offboard.StreamDead, got, want)
	}
}
