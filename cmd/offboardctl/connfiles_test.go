package main

import (
	"bytes"
	"net"
	"path/filepath"
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

// TestConnectionFileCannotBeOpened: a connection flag naming a file that
// is there but cannot be opened (a socket here; a file of another user's,
// mode 0600, alike) is bad usage, exit 2 with one line naming the flag,
// as a file that is not there is. It got past the check, and the
// connection failed, exit 1, in the client library's words.
func TestConnectionFileCannotBeOpened(t *testing.T) {
	t.Parallel()
	sock := filepath.Join(t.TempDir(), "s")
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = l.Close() })
	for _, args := range [][]string{
		{"--nats-creds", sock},
		{"--tlsca", sock},
		{"--tlscert", sock, "--tlskey", sock},
	} {
		var out, errb bytes.Buffer
		code := run(append([]string{"--nats-url", "nats://127.0.0.1:1"}, append(args, "status")...), &out, &errb)
		msg := errb.String()
		if code != exitUsage || strings.Count(strings.TrimSpace(msg), "\n") != 0 || !strings.HasPrefix(msg, "offboardctl: "+args[0]+": ") || !strings.Contains(msg, "could not be read") || strings.Contains(msg, sock) || out.Len() != 0 {
			t.Errorf("%q: exit %d, stdout %q, stderr %q; want exit %d and one line naming the flag, not the path", args, code, out.String(), msg, exitUsage)
		}
	}
}
