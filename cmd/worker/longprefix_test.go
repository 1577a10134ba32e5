package main

import (
	"bytes"
	"io"
	"strings"
	"testing"
)

// TestVeryLongPrefixesAreRefused: a --subject-prefix or
// --nats-inbox-prefix of thousands of characters (a file's content given
// in its place) passed --check-config; the start then made subjects
// longer than a NATS protocol line takes, the server closed the
// connection ("maximum control line exceeded"), and the start failed
// with "connection closed" for every stream and consumer, naming no
// setting. Refused before anything starts, exit 2, naming the flag.
func TestVeryLongPrefixesAreRefused(t *testing.T) {
	long := strings.Repeat("abcdefgh.", 3000) + "x"
	for _, c := range []struct {
		flag string
		args []string
	}{
		{"--subject-prefix", []string{"--subject-prefix", long}},
		{"--nats-inbox-prefix", []string{"--nats-url", "nats://127.0.0.1:1", "--nats-inbox-prefix", "_INBOX_" + long}},
	} {
		for _, check := range []bool{true, false} {
			args := append([]string{"--config", tenantsFile(t), "--data-dir", t.TempDir(), "--embedded-listen", "127.0.0.1:0", "--listen", "127.0.0.1:0"}, c.args...)
			if check {
				args = append(args, "--check-config")
			}
			var stderr bytes.Buffer
			code := run(args, io.Discard, &stderr)
			out := stderr.String()
			if code != 2 || strings.Count(out, "\n") != 1 || !strings.Contains(out, c.flag+": longer than 255 bytes") || strings.Contains(out, "abcdefgh.abcdefgh") {
				t.Errorf("%s (check %v): exit %d, stderr %.300q; want 2 and one line saying it is longer than 255 bytes", c.flag, check, code, out)
			}
		}
	}
	// A long prefix of a deep hierarchy is still taken.
	var stderr bytes.Buffer
	if code := run([]string{"--config", tenantsFile(t), "--subject-prefix", "com.contoso.security.operations.endpoint.defender.offboard", "--check-config"}, io.Discard, &stderr); code != 0 {
		t.Errorf("a prefix of 58 bytes: exit %d, %s", code, stderr.String())
	}
}
