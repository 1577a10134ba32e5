package main

import (
	"bytes"
	"strings"
	"testing"
	"time"

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

// TestSlowJetStreamWithinConnectTimeout: a JetStream that answers slower
// than nats.go's own default of 5 s, but within --connect-timeout, is
// waited for by every command. dead ls, dead retry, campaign cancel and
// campaign status gave up after those 5 s whatever --connect-timeout
// said, and then told the operator to raise it.
func TestSlowJetStreamWithinConnectTimeout(t *testing.T) {
	t.Parallel()
	const slow = 5500 * time.Millisecond // past nats.go's 5 s
	url := natstest.StartWithoutJetStream(t, false)
	nc, err := nats.Connect(url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	// A JetStream that answers every request, slowly: it has no stream.
	notFound := []byte(`{"type":"io.nats.jetstream.api.v1.stream_info_response","error":{"code":404,"err_code":10059,"description":"stream not found"}}`)
	if _, err := nc.Subscribe("$JS.API.>", func(m *nats.Msg) {
		if m.Reply == "" {
			return
		}
		time.AfterFunc(slow, func() { _ = m.Respond(notFound) })
	}); err != nil {
		t.Fatal(err)
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	for name, args := range map[string][]string{
		"dead ls":         {"dead", "ls"},
		"dead retry":      {"dead", "retry", "contoso", "--all"},
		"campaign cancel": {"campaign", "cancel", "--tenant", "contoso", "--name", "wave"},
		"campaign status": {"campaign", "status", "--tenant", "contoso", "--name", "wave"},
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			var stdout, stderr bytes.Buffer
			code := run(append([]string{"--nats-url", url, "--connect-timeout", "1m"}, args...), &stdout, &stderr)
			if out := stderr.String(); code == exitOK || strings.Contains(out, "deadline exceeded") || !strings.Contains(out, "not found") {
				t.Errorf("%v: exit %d, stderr %q: want the answer that came within --connect-timeout: not found", args, code, out)
			}
		})
	}
}
