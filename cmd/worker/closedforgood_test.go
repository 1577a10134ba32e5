package main

import (
	"io"
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/contoso-secops/mde-offboard/internal/queue/natstest"
)

// TestRunExitsOnceNATSClosedTheConnectionForGood: a NATS server that
// comes back refusing the worker's credentials (a password rotated or
// revoked) has the client close the connection for good. The worker then
// served nothing until a liveness probe restarted it, and under a service
// manager without one (systemd) for ever. It now stops and exits 1, for
// the manager to restart it with the credentials as they are now; the
// log says why, without the password.
func TestRunExitsOnceNATSClosedTheConnectionForGood(t *testing.T) {
	store := filepath.Join(t.TempDir(), "nats")
	s := natstest.StartWithPassword(t, -1, store, "worker", "first-pass")
	port := s.Addr().(*net.TCPAddr).Port
	t.Cleanup(func() { s.Shutdown(); s.WaitForShutdown() })
	url := strings.Replace(s.ClientURL(), "nats://", "nats://worker:first-pass@", 1)
	listen := freePort(t)
	var stderr lockedBuffer
	exit := make(chan int, 1)
	go func() {
		exit <- run([]string{"--config", tenantsFile(t), "--nats-url", url, "--listen", listen, "--log-format", "console"},
			io.Discard, &stderr)
	}()
	waitReady(t, listen, exit)

	s.Shutdown()
	s.WaitForShutdown()
	s = natstest.StartWithPassword(t, port, store, "worker", "second-pass")
	select {
	case code := <-exit:
		if code != 1 {
			t.Errorf("exit %d once the connection was closed for good, want 1", code)
		}
	case <-time.After(60 * time.Second):
		t.Fatalf("still running 60s after the server refused the credentials:\n%s", stderr.String())
	}
	out := stderr.String()
	if !strings.Contains(out, "closed for good") {
		t.Errorf("no word of the connection closed for good:\n%s", out)
	}
	if strings.Contains(out, "first-pass") || strings.Contains(out, "second-pass") {
		t.Errorf("a password in the log:\n%s", out)
	}
}
