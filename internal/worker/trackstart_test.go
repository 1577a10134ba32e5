package worker

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/contoso-secops/mde-offboard/offboard"
)

// TestTrackingStartLostToAnOutageIsTakenAgain: the first event of a
// created action that the results stream cannot take (NATS away for a
// moment right after the result was stored) does not leave the action
// unfollowed: the request is not acked, is taken again, answered from the
// ledger, and its action followed.
func TestTrackingStartLostToAnOutageIsTakenAgain(t *testing.T) {
	t.Parallel()
	core, logs := observer.New(zap.WarnLevel)
	e := setupLoopOpts(t, `["100/1m"]`, `    tracking:
      enabled: true
`, RetryPolicy{}, func(o *Options) { o.Logger = zap.New(core) })
	ctx := t.Context()
	stream, err := e.js.Stream(ctx, offboard.StreamResults)
	if err != nil {
		t.Fatal(err)
	}
	cfg := stream.CachedInfo().Config
	subjects := cfg.Subjects
	// The action subject has no stream for now: its events find none.
	cfg.Subjects = slices.DeleteFunc(slices.Clone(subjects), func(s string) bool { return strings.Contains(s, ".action.") })
	if _, err := e.js.UpdateStream(ctx, cfg); err != nil {
		t.Fatal(err)
	}
	e.publish(t, "r-1")
	e.wantCreated(t, "r-1")
	waitFor(t, "the first event refused", func() bool {
		for _, l := range logs.All() {
			if strings.Contains(fmt.Sprint(l.ContextMap()["error"]), ".action.contoso") {
				return true
			}
		}
		return false
	})
	cfg.Subjects = subjects
	if _, err := e.js.UpdateStream(ctx, cfg); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the action followed once the results stream takes events again", func() bool {
		states, err := e.w.opts.Ledger.Tracked(ctx, "contoso")
		if err != nil {
			t.Fatal(err)
		}
		for _, data := range states {
			var st tracked
			if json.Unmarshal(data, &st) == nil && st.ActionID != "" {
				return true
			}
		}
		return false
	})
}

// waitFor waits up to 20 s for cond.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("not within 20 s: %s", what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
