package main

import (
	"bytes"
	"io"
	"strings"
	"testing"
)

// TestSubjectPrefixUnderTheServersSubjects: NATS refuses a stream over
// its own subjects ($JS, $JSC, $NRG, $SYS), and one over a bucket's
// ($KV.MDE_OFFBOARD_LEDGER): such a --subject-prefix passed
// --check-config, and the start failed once NATS was up, exit 1. Both
// now exit 2 with one line naming the flag; a prefix that only looks
// like one ($js, $JSX) is taken.
func TestSubjectPrefixUnderTheServersSubjects(t *testing.T) {
	cfg := tenantsFile(t)
	for _, prefix := range []string{"$JS", "$JS.x", "$JSC.x", "$NRG", "$SYS.x", "$KV.MDE_OFFBOARD_LEDGER", "$KV", "$O"} {
		for _, check := range []bool{true, false} {
			if !check && (prefix == "$KV" || prefix == "$O") {
				continue // the start went through: it would serve until a signal
			}
			args := []string{"--config", cfg, "--data-dir", t.TempDir(), "--listen", "127.0.0.1:0",
				"--embedded-listen", "127.0.0.1:-1", "--subject-prefix", prefix}
			if check {
				args = append(args, "--check-config")
			}
			var stderr bytes.Buffer
			code := run(args, io.Discard, &stderr)
			out := stderr.String()
			if code != 2 || !strings.Contains(out, "--subject-prefix: under the NATS server's") || strings.Count(out, "\n") != 1 {
				t.Errorf("%s, check %v: exit code %d, %q; want 2 and one line naming --subject-prefix", prefix, check, code, out)
			}
		}
	}
	for _, prefix := range []string{"$js", "$JSX.x"} {
		var stderr bytes.Buffer
		if code := run([]string{"--config", cfg, "--check-config", "--skip-file-checks", "--subject-prefix", prefix}, io.Discard, &stderr); code != 0 {
			t.Errorf("%s: exit code %d, %q; want 0", prefix, code, stderr.String())
		}
	}
}
