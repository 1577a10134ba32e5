package main

import (
	"context"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/contoso-secops/mde-offboard/internal/queue"
	"github.com/contoso-secops/mde-offboard/internal/queue/natstest"
)

// TestCampaignRunEndsWhenNATSIsLost: a run waiting for results whose
// connection NATS closes for good (here the server came back refusing its
// password; a server away longer than the client's reconnects does the
// same) ends, exit 1, one line saying so, and writes its report. Before,
// it went on showing the counts it had, "ETA paused" included, and never
// ended: the results stored once NATS was back never reached it.
func TestCampaignRunEndsWhenNATSIsLost(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	store := filepath.Join(dir, "nats")
	s := natstest.StartWithPassword(t, -1, store, "app", "one")
	port := s.Addr().(*net.TCPAddr).Port
	t.Cleanup(func() { s.Shutdown(); s.WaitForShutdown() })
	nc, err := nats.Connect(s.ClientURL(), nats.UserInfo("app", "one"))
	if err != nil {
		t.Fatal(err)
	}
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := queue.Ensure(t.Context(), js, queue.Settings{Tenants: []string{tenant}}); err != nil {
		t.Fatal(err)
	}
	csvPath := writeFile(t, dir, "lost.csv", "machineId\n"+strings.Repeat("a", 40)+"\n"+strings.Repeat("b", 40)+"\n")
	report := filepath.Join(dir, "lost-report.csv")
	url := strings.Replace(s.ClientURL(), "nats://", "nats://app:one@", 1)

	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	done := runInBackground(ctx, "--nats-url", url, "campaign", "run", "--tenant", tenant, "--csv", csvPath,
		"--report", report, "--progress-every", "1h")
	// No worker: the rows wait in the stream once published.
	rowsPublished(t, js)
	nc.Close()
	s.Shutdown()
	s.WaitForShutdown()
	s = natstest.StartWithPassword(t, port, store, "app", "two")

	var e ran
	select {
	case e = <-done:
	case <-time.After(30 * time.Second):
		cancel()
		e = <-done
		t.Fatalf("the run did not end within 30s of NATS closing its connection; interrupted: exit %d: %s %s", e.code, e.out, e.err)
	}
	t.Logf("exit %d: %s", e.code, e.err)
	if e.code != exitFailed || strings.Count(strings.TrimSpace(e.err), "\n") != 0 || !strings.Contains(e.err, "connection to NATS") ||
		strings.Contains(e.err, "one@") {
		t.Errorf("exit %d, want 1 and one line naming the lost connection, without the password: %q", e.code, e.err)
	}
	if !strings.Contains(e.out, "no result 2") {
		t.Errorf("summary: %q", e.out)
	}
	if b, err := os.ReadFile(report); err != nil || strings.Count(string(b), "\n") != 3 {
		t.Errorf("report: %v %q", err, b)
	}
}
