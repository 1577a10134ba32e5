package app

import (
	"context"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/contoso-secops/mde-offboard/internal/queue/natstest"
)

// get answers path's status and body.
func get(t *testing.T, a *App, path string) (int, string) {
	t.Helper()
	resp, err := http.Get("http://" + a.HTTPAddr() + path)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// TestHealthzFailsOnceNATSClosedTheConnectionForGood: a server that comes
// back refusing the worker's credentials (a NATS password or user JWT
// rotated or revoked) has the client give up: the connection is closed
// and never made again. The worker can serve nothing until it is
// restarted with credentials the server takes, so /healthz answers 503
// and a liveness probe restarts it. Before, /healthz answered 200 for
// ever: the pod stayed up, unready, and never picked up the rotated
// credentials.
func TestHealthzFailsOnceNATSClosedTheConnectionForGood(t *testing.T) {
	t.Parallel()
	e := setup(t, envConfig{tenants: []string{"contoso"}, noStart: true})
	store := filepath.Join(e.dir, "external")
	s := natstest.StartWithPassword(t, -1, store, "worker", "one")
	port := s.Addr().(*net.TCPAddr).Port
	t.Cleanup(func() { s.Shutdown(); s.WaitForShutdown() })
	o := e.opts
	o.NATSURL = strings.Replace(s.ClientURL(), "nats://", "nats://worker:one@", 1)
	a, _ := startWatchingConn(t, o)
	t.Cleanup(func() { _ = a.Stop(context.Background()) })
	if code, body := get(t, a, "/healthz"); code != http.StatusOK {
		t.Fatalf("/healthz of a started worker answered %d %q", code, body)
	}

	s.Shutdown()
	s.WaitForShutdown()
	s = natstest.StartWithPassword(t, port, store, "worker", "two")
	eventually(t, 20*time.Second, "the client to give up on the refused credentials", a.nc.IsClosed)
	code, body := get(t, a, "/healthz")
	if code != http.StatusServiceUnavailable || !strings.Contains(body, "NATS") {
		t.Errorf("/healthz with the NATS connection closed for good answered %d %q, want 503 naming NATS", code, body)
	}
	if code, body := get(t, a, "/readyz"); code != http.StatusServiceUnavailable || !strings.Contains(body, "closed") {
		t.Errorf("/readyz with the NATS connection closed for good answered %d %q, want 503 saying it is closed", code, body)
	}
	if strings.Contains(body, "one") || strings.Contains(body, "two") {
		t.Errorf("/healthz shows a password: %q", body)
	}
}
