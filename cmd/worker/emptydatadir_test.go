package main

import (
	"bytes"
	"io"
	"testing"
)

// TestEmptyDataDirIsRefused: --data-dir "" (a variable expanded to
// nothing on the command line) stored the embedded server's streams, the
// requests waiting and the ledger, in ./data of the working directory,
// without a word: not on the volume meant, and gone with the container.
// It is now refused, naming the flag, at start and from --check-config,
// before anything starts. With --nats-url the directory is not used.
func TestEmptyDataDirIsRefused(t *testing.T) {
	cfg := tenantsFile(t)
	const want = "worker: --data-dir: empty; give the embedded NATS server's storage, such as --data-dir ./data (or --nats-url)\n"
	for _, check := range []bool{true, false} {
		args := []string{"--config", cfg, "--data-dir", "", "--listen", "127.0.0.1:0", "--embedded-listen", "127.0.0.1:-1"}
		if check {
			args = append(args, "--check-config")
		}
		var stderr bytes.Buffer
		if code := run(args, io.Discard, &stderr); code != 2 || stderr.String() != want {
			// Fatal: without the check, the start would run the server.
			t.Fatalf("check %v: exit code %d, %q; want 2 and %q", check, code, stderr.String(), want)
		}
	}
	var stderr bytes.Buffer
	if code := run([]string{"--config", cfg, "--data-dir", "", "--nats-url", "nats://127.0.0.1:4222", "--check-config"}, io.Discard, &stderr); code != 0 {
		t.Errorf("with --nats-url: exit code %d, %q; want 0", code, stderr.String())
	}
}
