package main

import (
	"bytes"
	"strings"
	"testing"
)

// TestConnectionFileIsADirectory: a connection flag naming a directory
// where it wants a file is bad usage, exit 2 with one line, as a file
// that is not there is. It got past the check and failed the connection,
// exit 1, in the client library's words.
func TestConnectionFileIsADirectory(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	for _, args := range [][]string{
		{"--nats-creds", dir},
		{"--tlsca", dir},
		{"--tlscert", dir, "--tlskey", dir},
	} {
		var out, errb bytes.Buffer
		code := run(append([]string{"--nats-url", "nats://127.0.0.1:1"}, append(args, "status")...), &out, &errb)
		msg := errb.String()
		if code != exitUsage || strings.Count(strings.TrimSpace(msg), "\n") != 0 || !strings.Contains(msg, args[0]) || !strings.Contains(msg, "directory") || out.Len() != 0 {
			t.Errorf("%q: exit %d, stdout %q, stderr %q; want exit %d and one line naming the flag", args, code, out.String(), msg, exitUsage)
		}
	}
}
