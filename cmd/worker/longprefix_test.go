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
		args := append([]string{"--config", tenantsFile(t), "--data-dir", t.TempDir(), "--embedded-listen", "127.0.0.1:0", "--listen", "127.0.0.1:0"}, c.args...)
		refusedInOneLine(t, c.flag, args, nil, []string{c.flag + ": longer than 255 bytes"}, "abcdefgh.abcdefgh")
	}
	// A long prefix of a deep hierarchy is still taken.
	var stderr bytes.Buffer
	if code := run([]string{"--config", tenantsFile(t), "--subject-prefix", "com.contoso.security.operations.endpoint.defender.offboard", "--check-config"}, io.Discard, &stderr); code != 0 {
		t.Errorf("a prefix of 58 bytes: exit %d, %s", code, stderr.String())
	}
}
