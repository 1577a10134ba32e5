package main

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/contoso-secops/mde-offboard/internal/campaign"
	"github.com/contoso-secops/mde-offboard/internal/queue"
	"github.com/contoso-secops/mde-offboard/internal/queue/natstest"
	"github.com/contoso-secops/mde-offboard/offboard"
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
			js, hole := silencedServer(t)
			dir := t.TempDir()
			csvPath := writeFile(t, dir, "frozen.csv", numberedCSV(2))
			report := filepath.Join(dir, "frozen-report.csv")
			ctx, cancel := context.WithCancel(t.Context())
			defer cancel()
			done := runInBackground(ctx, append([]string{"--nats-url", hole.URL(), "campaign", "run", "--tenant", tenant, "--csv", csvPath,
				"--report", report, "--progress-every", "1h"}, c.args...)...)
			// No worker: the rows wait in the stream once published.
			rowsPublished(t, js)
			// The rows' acknowledgements reach the run first: one
			// silenced on its way is awaited up to ackGrace, by design.
			time.Sleep(time.Second)
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

// TestCampaignRunGoesOnAfterItsConnectionWentSilent: a run waiting for
// results whose connection to NATS went silent without being closed (a
// firewall or a NAT that dropped its flow, a node cut off) notices within
// half a minute, connects again and reads the results stored meanwhile:
// it ends, exit 0. Before, the client library's pings, every two
// minutes with two unanswered allowed, took four to six minutes to
// notice; here the run had not ended after 90 s.
func TestCampaignRunGoesOnAfterItsConnectionWentSilent(t *testing.T) {
	t.Parallel()
	js, hole := silencedServer(t)
	dir := t.TempDir()
	csvPath := writeFile(t, dir, "silent.csv", numberedCSV(2))
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	done := runInBackground(ctx, "--nats-url", hole.URL(), "campaign", "run", "--tenant", tenant, "--csv", csvPath,
		"--report", filepath.Join(dir, "silent-report.csv"), "--progress-every", "1h")
	rowsPublished(t, js)
	hole.Cut()
	since := time.Now()
	// The rows answered while the run's connection is silent.
	for n := 1; n <= 2; n++ {
		id := campaign.RequestID("silent", n)
		res, err := (&offboard.Result{RequestID: id, Tenant: tenant, MachineID: fmt.Sprintf("%040x", n), Outcome: offboard.OutcomeCreated, Attempt: 1}).Marshal()
		if err != nil {
			t.Fatal(err)
		}
		if _, err := js.Publish(t.Context(), offboard.Subjects{}.Result(tenant), res, jetstream.WithMsgID(offboard.ResultMsgID(tenant, id, 1))); err != nil {
			t.Fatal(err)
		}
	}
	select {
	case e := <-done:
		t.Logf("exit %d %s after the cut: %s", e.code, time.Since(since).Round(time.Millisecond), e.out)
		if e.code != exitOK || !strings.Contains(e.out, "created 2") {
			t.Errorf("exit %d, stdout %q, stderr %q: want 0 and both rows created", e.code, e.out, e.err)
		}
	case <-time.After(90 * time.Second):
		cancel()
		e := <-done
		t.Fatalf("the run did not end within 90s of its connection going silent; interrupted: exit %d: %s", e.code, e.out)
	}
}

// silencedServer starts a NATS server set up for the tenant and a
// Silencer in front of it: offboardctl connects through the Silencer,
// the test through js.
func silencedServer(t *testing.T) (jetstream.JetStream, *natstest.Silencer) {
	t.Helper()
	srv := natstest.Start(t, 1)
	_, js := srv.Connect(t)
	if _, err := queue.Ensure(t.Context(), js, queue.Settings{Tenants: []string{tenant}}); err != nil {
		t.Fatal(err)
	}
	return js, natstest.NewSilencer(t, strings.TrimPrefix(srv.URLs(), "nats://"))
}

// rowsPublished waits until the run has published its two rows.
func rowsPublished(t *testing.T, js jetstream.JetStream) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for lastRequestSeq(t, js) < 2 {
		if time.Now().After(deadline) {
			t.Fatal("the run did not publish its rows within 20s")
		}
		time.Sleep(20 * time.Millisecond)
	}
}
