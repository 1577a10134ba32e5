package main

import (
	"context"
	"net"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/contoso-secops/mde-offboard/internal/campaign"
	"github.com/contoso-secops/mde-offboard/internal/queue"
	"github.com/contoso-secops/mde-offboard/internal/queue/natstest"
)

// TestCampaignRunProgressSaysNATSIsLost: while the connection to NATS is
// lost and the client makes it again, the progress says so, naming the
// server without its password; once it is back, the lines no longer do.
// Before, they went on unchanged ("waiting 2 ... ETA paused") for the two
// minutes the client tries, as if the rows were only slow.
func TestCampaignRunProgressSaysNATSIsLost(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	store := filepath.Join(dir, "nats")
	var mu sync.Mutex
	s := natstest.StartWithPassword(t, -1, store, "app", "hunter2")
	port := s.Addr().(*net.TCPAddr).Port
	t.Cleanup(func() {
		mu.Lock()
		defer mu.Unlock()
		s.Shutdown()
		s.WaitForShutdown()
	})
	nc, err := nats.Connect(s.ClientURL(), nats.UserInfo("app", "hunter2"))
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
	url := strings.Replace(s.ClientURL(), "nats://", "nats://app:hunter2@", 1)

	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	out := &progressLines{}
	done := make(chan ran, 1)
	go func() {
		var errb strings.Builder
		code := runContext(ctx, []string{"--nats-url", url, "campaign", "run", "--tenant", tenant, "--csv", csvPath,
			"--report", filepath.Join(dir, "lost-report.csv"), "--progress-every", "100ms"}, out, &errb)
		done <- ran{code, "", errb.String()}
	}()
	ended := sync.OnceValue(func() ran { return <-done })
	// A failed wait ends the run before the directory is removed.
	defer func() { cancel(); ended() }()
	// No worker: the rows wait in the stream once published.
	rowsPublished(t, js)
	nc.Close()
	mu.Lock()
	s.Shutdown()
	s.WaitForShutdown()
	mu.Unlock()

	lost := "the connection to NATS at nats://127.0.0.1:" + strconv.Itoa(port) + " was lost"
	n := out.waitFor(t, 0, 10*time.Second, func(l string) bool { return strings.Contains(l, lost) })
	t.Logf("while lost: %s", out.line(n))
	if line := out.line(n); strings.Contains(line, "hunter2") || !strings.Contains(line, "waiting 2") {
		t.Errorf("progress while NATS is lost: %q", line)
	}

	mu.Lock()
	s = natstest.StartWithPassword(t, port, store, "app", "hunter2")
	mu.Unlock()
	// The client tries again every 2 s.
	out.waitFor(t, n+1, 15*time.Second, func(l string) bool {
		return strings.HasPrefix(l, "campaign lost") && !strings.Contains(l, "was lost")
	})

	cancel()
	e := ended()
	if e.code != exitFailed {
		t.Errorf("interrupted: exit %d, want 1: %s", e.code, e.err)
	}
	if all := out.text(); strings.Contains(all, "hunter2") {
		t.Errorf("the password in the output: %q", all)
	}
}

// progressLines keeps what a command writes, one write a line, for a
// test to wait for a line while the command runs.
type progressLines struct {
	mu    sync.Mutex
	lines []string
}

func (w *progressLines) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.lines = append(w.lines, strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

func (w *progressLines) line(i int) string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.lines[i]
}

func (w *progressLines) text() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return strings.Join(w.lines, "\n")
}

// waitFor waits up to limit for a line from the from'th on that match
// accepts, and returns its index.
func (w *progressLines) waitFor(t *testing.T, from int, limit time.Duration, match func(string) bool) int {
	t.Helper()
	deadline := time.Now().Add(limit)
	for {
		w.mu.Lock()
		for i := from; i < len(w.lines); i++ {
			if match(w.lines[i]) {
				w.mu.Unlock()
				return i
			}
		}
		from = max(from, len(w.lines))
		last := ""
		if len(w.lines) > 0 {
			last = w.lines[len(w.lines)-1]
		}
		w.mu.Unlock()
		if time.Now().After(deadline) {
			t.Fatalf("no such line within %v; the last: %q", limit, last)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestBarSaysNATSIsLost: on a terminal, the bar's description says the
// connection is lost too, whole where it fits, "NATS lost" where the
// counts are shortened.
func TestBarSaysNATSIsLost(t *testing.T) {
	t.Parallel()
	s := progressSnapshot{counts: campaign.Counts{Rows: 100000, Created: 12345, Waiting: 87655}, eta: time.Hour,
		lost: true, lostFor: 12 * time.Second, server: "nats://127.0.0.1:4222"}
	if d := fitDescription(s, -1); !strings.Contains(d, "NATS lost 12s ago, reconnecting") {
		t.Errorf("wide: %q", d)
	}
	if d := fitDescription(s, 80-12-len("(100000/100000)")); !strings.HasSuffix(d, "NATS lost") {
		t.Errorf("80 columns: %q", d)
	}
	s.lost = false
	if d := fitDescription(s, -1); strings.Contains(d, "NATS") {
		t.Errorf("connected: %q", d)
	}
}
