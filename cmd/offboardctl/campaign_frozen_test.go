package main

import (
	"context"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/contoso-secops/mde-offboard/internal/queue"
	"github.com/contoso-secops/mde-offboard/internal/queue/natstest"
)

// TestCampaignRunEndsAtOnceOnAFrozenServer: a run waiting for results
// whose server froze (a stopped container, a paused VM: the connection
// stays open, nothing comes back) ends at once at an interrupt or as its
// --timeout runs out, exit 1, with its summary and report. Before, its
// end waited for the server to answer the stop of its read of the
// results (10 s a try) and of its watch of the cancel marks (5 s): 5 s
// after Ctrl-C, and 12 to 13 s past --timeout.
func TestCampaignRunEndsAtOnceOnAFrozenServer(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		name      string
		interrupt bool
		args      []string
		within    time.Duration // of the interrupt, or of the freeze
	}{
		{"interrupted", true, nil, 3 * time.Second},
		{"timeout", false, []string{"--timeout", "4s"}, 7 * time.Second},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			srv := natstest.Start(t, 1)
			_, js := srv.Connect(t)
			if _, err := queue.Ensure(t.Context(), js, queue.Settings{Tenants: []string{tenant}}); err != nil {
				t.Fatal(err)
			}
			hole := natstest.NewSilencer(t, strings.TrimPrefix(srv.URLs(), "nats://"))
			dir := t.TempDir()
			csvPath := writeFile(t, dir, "frozen.csv", numberedCSV(2))
			report := filepath.Join(dir, "frozen-report.csv")
			ctx, cancel := context.WithCancel(t.Context())
			defer cancel()
			done := runInBackground(ctx, append([]string{"--nats-url", hole.URL(), "campaign", "run", "--tenant", tenant, "--csv", csvPath,
				"--report", report, "--progress-every", "1h"}, c.args...)...)
			// No worker: the rows wait in the stream once published.
			deadline := time.Now().Add(20 * time.Second)
			for lastRequestSeq(t, js) < 2 {
				if time.Now().After(deadline) {
					t.Fatal("the run did not publish its rows within 20s")
				}
				time.Sleep(20 * time.Millisecond)
			}
			hole.Silence()
			since := time.Now()
			if c.interrupt {
				time.Sleep(time.Second)
				since = time.Now()
				cancel()
			}
			select {
			case e := <-done:
				took := time.Since(since)
				t.Logf("exit %d after %s: %s", e.code, took.Round(time.Millisecond), e.err)
				if took > c.within {
					t.Errorf("the run ended %s after the freeze or the interrupt, want within %s", took.Round(time.Millisecond), c.within)
				}
				if e.code != exitFailed || !strings.Contains(e.out, "no result 2") || strings.Count(strings.TrimSpace(e.err), "\n") != 0 {
					t.Errorf("exit %d, stdout %q, stderr %q: want 1, the summary and one line", e.code, e.out, e.err)
				}
			case <-time.After(time.Minute):
				t.Fatal("the run did not end within a minute")
			}
		})
	}
}
