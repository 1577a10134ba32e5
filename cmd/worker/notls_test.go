package main

import (
	"bytes"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/contoso-secops/mde-offboard/internal/queue/natstest"
	"github.com/contoso-secops/mde-offboard/internal/testcert"
)

// TestNATSWithoutTLSNamesTheTLSFlags: --tlsca given for a NATS server
// without TLS fails the start, exit 1, in one line naming the TLS flags
// and what to do. Before, "nats: secure connection not available" alone.
func TestNATSWithoutTLSNamesTheTLSFlags(t *testing.T) {
	t.Parallel()
	nc, _ := natstest.Connect(t)
	dir := t.TempDir()
	_, certPEM := testcert.Write(t, filepath.Join(dir, "cert.pem"), "nats")
	ca := filepath.Join(dir, "ca.pem")
	if err := os.WriteFile(ca, certPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	var stderr bytes.Buffer
	code := run([]string{"--config", tenantsFile(t), "--nats-url", nc.ConnectedUrl(), "--tlsca", ca, "--listen", "127.0.0.1:0"}, io.Discard, &stderr)
	out := stderr.String()
	if code != 1 || strings.Count(out, "\n") != 1 || !strings.Contains(out, "the server offers no TLS, which --tlsca, --tlscert and --tlskey ask for") {
		t.Errorf("exit %d, stderr %q; want 1 and one line naming the TLS flags", code, out)
	}
}

// TestTLSURLWithoutTLSNamesTheScheme: a tls:// --nats-url, no TLS flag
// given, for a NATS server without TLS fails the start, exit 1, in one
// line naming the URL's scheme. Before, it asked to leave out --tlsca,
// --tlscert and --tlskey, none of them given.
func TestTLSURLWithoutTLSNamesTheScheme(t *testing.T) {
	t.Parallel()
	nc, _ := natstest.Connect(t)
	url := strings.Replace(nc.ConnectedUrl(), "nats://", "tls://", 1)
	var stderr bytes.Buffer
	code := run([]string{"--config", tenantsFile(t), "--nats-url", url, "--listen", "127.0.0.1:0"}, io.Discard, &stderr)
	out := stderr.String()
	if code != 1 || strings.Count(out, "\n") != 1 || !strings.Contains(out, "the server offers no TLS, which the URL's tls:// scheme asks for") ||
		strings.Contains(out, "--tls") {
		t.Errorf("exit %d, stderr %q; want 1 and one line naming the scheme", code, out)
	}
}
