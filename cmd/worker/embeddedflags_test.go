package main

import (
	"bytes"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/contoso-secops/mde-offboard/internal/testcert"
)

// TestEmbeddedServerSettingsRefused: without --nats-url the worker starts
// its own NATS server, a single node without TLS. Stream replicas above
// 1 and the TLS flags cannot work there: --check-config said valid, and
// the start failed once the server was up, exit 1 ("replicas > 1 not
// supported in non-clustered mode", "secure connection not
// available"), as if NATS were down. Both now exit 2 with one line.
func TestEmbeddedServerSettingsRefused(t *testing.T) {
	cfg := tenantsFile(t)
	// A certificate and its key: the files pass their own check.
	pem := filepath.Join(t.TempDir(), "ca.pem")
	testcert.Write(t, pem, "nats")
	creds := filepath.Join(t.TempDir(), "user.creds")
	if err := os.WriteFile(creds, []byte("-----BEGIN NATS USER JWT-----\neyJ0eXAiOiJKV1QifQ.eyJzdWIiOiJVQUJDIn0.c2ln\n------END NATS USER JWT------\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name  string
		flags []string
		want  string
	}{
		{"stream replicas", []string{"--stream-replicas", "3"}, "--stream-replicas 3: the embedded NATS server"},
		{"tls ca", []string{"--tlsca", pem}, "--tlsca: the embedded NATS server"},
		{"client certificate", []string{"--tlscert", pem, "--tlskey", pem}, "--tlscert: the embedded NATS server"},
		{"credentials", []string{"--nats-creds", creds}, "--nats-creds: the embedded NATS server"},
		{"inbox prefix", []string{"--nats-inbox-prefix", "_INBOX_worker"}, "--nats-inbox-prefix: the embedded NATS server"},
	} {
		for _, check := range []bool{true, false} {
			args := append([]string{"--config", cfg, "--data-dir", t.TempDir(), "--listen", "127.0.0.1:0",
				"--embedded-listen", "127.0.0.1:-1"}, tc.flags...)
			if check {
				args = append(args, "--check-config")
			}
			var stderr bytes.Buffer
			code := run(args, io.Discard, &stderr)
			out := stderr.String()
			if code != 2 || !strings.Contains(out, tc.want) || strings.Count(out, "\n") != 1 {
				t.Errorf("%s, check %v: exit code %d, %q; want 2 and one line saying %q", tc.name, check, code, out, tc.want)
				if code == 0 {
					break // taken by the check: the start would serve the embedded server until stopped
				}
			}
		}
	}
	// With a NATS URL they are the server's to take.
	var stderr bytes.Buffer
	if code := run([]string{"--config", cfg, "--check-config", "--nats-url", "nats://127.0.0.1:4222", "--stream-replicas", "3",
		"--tlsca", pem, "--nats-creds", creds, "--nats-inbox-prefix", "_INBOX_worker"}, io.Discard, &stderr); code != 0 {
		t.Errorf("with --nats-url: exit code %d, %q; want 0", code, stderr.String())
	}
}
