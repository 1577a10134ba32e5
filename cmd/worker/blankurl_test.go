package main

import (
	"bytes"
	"io"
	"strings"
	"testing"
)

// TestBlankNATSURLIsRefused: a --nats-url of white space or commas alone
// (a Secret's value that was only a line end) names no server, yet it is
// no empty flag either: the embedded server was not started, and the
// start failed connecting "to NATS at : no servers available", exit 1,
// as if a server were down, after --check-config had said valid.
func TestBlankNATSURLIsRefused(t *testing.T) {
	for _, url := range []string{" ", "\n", ",", " , "} {
		for _, check := range []bool{true, false} {
			args := []string{"--config", "../../deploy/worker.yaml", "--nats-url", url, "--listen", "127.0.0.1:0"}
			if check {
				args = append(args, "--check-config", "--skip-file-checks")
			}
			var stderr bytes.Buffer
			code := run(args, io.Discard, &stderr)
			out := stderr.String()
			if code != 2 || !strings.Contains(out, "--nats-url: names no server") || strings.Count(out, "\n") != 1 {
				t.Errorf("--nats-url %q (check %v): exit %d, stderr %q; want 2 and one line saying it names no server", url, check, code, out)
			}
		}
	}
}
