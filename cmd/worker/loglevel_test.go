package main

import (
	"bytes"
	"io"
	"testing"
)

// TestLogLevelAboveErrorIsRefused: the log library also reads dpanic,
// panic and fatal, above error, which the worker never logs at: with one
// of them every error went unsaid, and a start that failed (NATS out of
// reach) exited 1 with nothing on stderr. Only the levels --log-level
// names are taken; any other is refused, exit 2, in one line.
func TestLogLevelAboveErrorIsRefused(t *testing.T) {
	for _, level := range []string{"dpanic", "panic", "fatal", "FATAL"} {
		refusedInOneLine(t, "--log-level "+level,
			[]string{"--config", tenantsFile(t), "--log-level", level, "--nats-url", "nats://127.0.0.1:1", "--listen", "127.0.0.1:0"},
			nil, []string{"--log-level: want debug, info, warn or error"})
	}
	for _, level := range []string{"debug", "info", "warn", "error", "WARN"} {
		var stderr bytes.Buffer
		if code := run([]string{"--config", tenantsFile(t), "--log-level", level, "--check-config"}, io.Discard, &stderr); code != 0 {
			t.Errorf("--log-level %s: exit %d, %s", level, code, stderr.String())
		}
	}
}
