package main

import (
	"bytes"
	"context"
	"strings"
	"testing"

	"github.com/contoso-secops/mde-offboard/internal/queue/natstest"
)

// Under deploy/nats/accounts.conf, offboardctl without the inbox prefix
// its user may read (or with another user's) gets no answer; its one line
// of error says NATS refused it and names --nats-inbox-prefix, where it
// said only "context deadline exceeded" after a raw line from the client
// library. t.Setenv: not parallel.
func TestRefusedInboxIsNamed(t *testing.T) {
	url := natstest.StartFromConfig(t, "../../deploy/nats/accounts.conf", "pw",
		"OFFBOARDCTL_PASSWORD", "MDE_OFFBOARD_WORKER_PASSWORD", "CONTOSO_CMDB_PASSWORD", "CONTOSO_GOV_CMDB_PASSWORD")
	u := strings.Replace(url, "nats://", "nats://offboardctl:pw@", 1)
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
