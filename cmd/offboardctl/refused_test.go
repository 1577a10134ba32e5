package main

import (
	"bytes"
	"context"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
)

// Under deploy/nats/accounts.conf, offboardctl without the inbox prefix
// its user may read (or with another user's) gets no answer; its one line
// of error says NATS refused it and names --nats-inbox-prefix, where it
// said only "context deadline exceeded" after a raw line from the client
// library. t.Setenv: not parallel.
func TestRefusedInboxIsNamed(t *testing.T) {
	t.Setenv("OFFBOARDCTL_PASSWORD", "pw")
	for _, v := range []string{"MDE_OFFBOARD_WORKER_PASSWORD", "CONTOSO_CMDB_PASSWORD", "CONTOSO_GOV_CMDB_PASSWORD"} {
		t.Setenv(v, "x")
	}
	opts, err := server.ProcessConfigFile("../../deploy/nats/accounts.conf")
	if err != nil {
		t.Fatal(err)
	}
	opts.Host, opts.Port, opts.JetStream, opts.StoreDir, opts.NoSigs, opts.NoLog = "127.0.0.1", -1, true, t.TempDir(), true, true
	s, err := server.NewServer(opts)
	if err != nil {
		t.Fatal(err)
	}
	go s.Start()
	t.Cleanup(func() { s.Shutdown(); s.WaitForShutdown() })
	if !s.ReadyForConnections(10 * time.Second) {
		t.Fatal("NATS server not ready")
	}
	u := "nats://" + url.UserPassword("offboardctl", "pw").String() + "@" + strings.TrimPrefix(s.ClientURL(), "nats://")
	for _, prefix := range []string{"", "_INBOX_worker"} {
		var out, errb bytes.Buffer
		code := runContext(context.Background(), []string{"--nats-url", u, "--connect-timeout", "1s", "--nats-inbox-prefix", prefix, "dead", "ls", "contoso"}, &out, &errb)
		msg := errb.String()
		if code != exitFailed || !strings.Contains(msg, "NATS refused this user") || !strings.Contains(msg, "--nats-inbox-prefix") ||
			strings.Count(strings.TrimSpace(msg), "\n") != 0 || strings.Contains(msg, "pw@") {
			t.Errorf("--nats-inbox-prefix %q: exit %d, stderr %q", prefix, code, msg)
		}
	}
}
