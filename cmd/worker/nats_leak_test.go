package main

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
)

// leakServer starts a NATS server that wants the user and password, or
// the token, and returns its host:port.
func leakServer(t *testing.T, user, pass, token string) string {
	t.Helper()
	o := &server.Options{Host: "127.0.0.1", Port: -1, NoSigs: true, NoLog: true, JetStream: true, StoreDir: t.TempDir(),
		Username: user, Password: pass, Authorization: token}
	s, err := server.NewServer(o)
	if err != nil {
		t.Fatal(err)
	}
	go s.Start()
	t.Cleanup(func() { s.Shutdown(); s.WaitForShutdown() })
	if !s.ReadyForConnections(10 * time.Second) {
		t.Fatal("not ready")
	}
	return strings.TrimPrefix(s.ClientURL(), "nats://")
}

func TestWorkerLogsNoNATSSecret(t *testing.T) {
	dir := t.TempDir()
	cfg := filepath.Join(dir, "worker.yaml")
	secret := filepath.Join(dir, "secret")
	os.WriteFile(secret, []byte("x\n"), 0o600)
	os.WriteFile(cfg, []byte(fmt.Sprintf(`tenants:
  - name: contoso
    tenantId: 11111111-2222-3333-4444-555555555555
    clientId: 66666666-7777-8888-9999-000000000000
    clientSecretFile: %s
`, secret)), 0o600)
	hp := leakServer(t, "alice", "right", "")
	creds := filepath.Join(dir, "bad.creds")
	os.WriteFile(creds, []byte("eyJSECRETJWTxxx\nSUSECRETSEEDxxx\n"), 0o600)
	cases := []struct {
		name, url, leak string
		extra           []string
	}{
		{"wrong pw", "nats://alice:WRONGSECRET@" + hp, "WRONGSECRET", nil},
		{"token comma", "nats://TOKSECRET,rest@" + hp, "TOKSECRET", nil},
		{"token slash", "nats://TOKSECRET/rest@" + hp, "TOKSECRET", nil},
		{"token hash", "nats://TOKSECRET#rest@" + hp, "TOKSECRET", nil},
		{"token qmark", "nats://TOKSECRET?rest@" + hp, "TOKSECRET", nil},
		// A websocket proxy in front of NATS may take its token in the
		// query, which the client sends in its handshake.
		{"token in the query", "nats://" + hp + "/?token=QUERYSECRET", "QUERYSECRET", nil},
		{"token in the fragment", "nats://" + hp + "#QUERYSECRET", "QUERYSECRET", nil},
		{"two commas", "nats://alice:PWSECRET,b,c@" + hp, "PWSECRET", nil},
		{"digits comma", "nats://alice:4222,PWSECRET@" + hp, "4222,", nil},
		{"bad creds", "nats://" + hp, "SECRET", []string{"--nats-creds", creds}},
		{"creds content as the file", "nats://alice:right@" + hp, "SECRETSEED", []string{"--nats-creds", "-----BEGIN USER NKEY SEED-----\nSUSECRETSEEDxxx\n------END USER NKEY SEED------"}},
		{"flag without its value", "nats://" + hp, "LOSTSECRET", []string{"--nats-creds", "--nats-url", "nats://alice:LOSTSECRET@" + hp}},
		{"key content as the file", "nats://alice:right@" + hp, "SECRETKEY", []string{"--tlscert", secret, "--tlskey", "-----BEGIN PRIVATE KEY-----\nSECRETKEY\n-----END PRIVATE KEY-----"}},
	}
	for _, c := range cases {
		var buf bytes.Buffer
		args := append([]string{"--config", cfg, "--nats-url", c.url, "--listen", "127.0.0.1:0", "--data-dir", t.TempDir()}, c.extra...)
		done := make(chan int)
		go func() { done <- run(args, io.Discard, &buf) }()
		select {
		case code := <-done:
			out := buf.String()
			t.Logf("%s: exit %d: %s", c.name, code, out)
			if strings.Contains(out, c.leak) {
				t.Errorf("%s: LEAK %q", c.name, c.leak)
			}
		case <-time.After(20 * time.Second):
			t.Logf("%s: still running: %s", c.name, buf.String())
		}
	}
}
