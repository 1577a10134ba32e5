package main

import (
	"bytes"
	"strings"
	"testing"

	"github.com/nats-io/nats.go"

	"github.com/contoso-secops/mde-offboard/internal/queue/natstest"
)

// TestJetStreamThatDoesNotAnswerIsExplained: NATS takes the connection,
// but its JetStream API does not answer (a meta leader being elected, a
// server too busy). pause and status failed with "bucket
// MDE_OFFBOARD_CONTROL: context deadline exceeded", which said neither
// why nor what to do; the error now says both, on one line.
func TestJetStreamThatDoesNotAnswerIsExplained(t *testing.T) {
	t.Parallel()
	url := natstest.StartWithoutJetStream(t, false)
	nc, err := nats.Connect(url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	// Someone takes every JetStream API request and never answers.
	if _, err := nc.Subscribe("$JS.API.>", func(*nats.Msg) {}); err != nil {
		t.Fatal(err)
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{{"pause", "contoso"}, {"status"}} {
		var stdout, stderr bytes.Buffer
		code := run(append([]string{"--nats-url", url, "--connect-timeout", "200ms"}, args...), &stdout, &stderr)
		out := stderr.String()
		if code != exitFailed || !strings.Contains(out, "context deadline exceeded") ||
			!strings.Contains(out, "JetStream did not answer in time") || strings.Count(out, "\n") != 1 {
			t.Errorf("%v: exit %d, stderr %q: want 1 and one line saying JetStream did not answer", args, code, out)
		}
	}
}
