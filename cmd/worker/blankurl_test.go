package main

import (
	"fmt"
	"testing"
)

// TestBlankNATSURLIsRefused: a --nats-url of white space or commas alone
// (a Secret's value that was only a line end) names no server, yet it is
// no empty flag either: the embedded server was not started, and the
// start failed connecting "to NATS at : no servers available", exit 1,
// as if a server were down, after --check-config had said valid.
func TestBlankNATSURLIsRefused(t *testing.T) {
	for _, url := range []string{" ", "\n", ",", " , "} {
		refusedInOneLine(t, fmt.Sprintf("--nats-url %q", url),
			[]string{"--config", "../../deploy/worker.yaml", "--nats-url", url, "--listen", "127.0.0.1:0"},
			[]string{"--skip-file-checks"}, []string{"--nats-url: names no server"})
	}
}
