package main

import (
	"bytes"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestCheckConfigNamesTheFileOnlyForItsErrors: --check-config puts the
// tenants file's path before an error of the file, not before one of a
// flag alone (a credentials file that is a directory, a replica id, a
// NATS URL): "worker.yaml: --nats-creds: ..." sent the operator to look
// for the mistake in a file that has none.
func TestCheckConfigNamesTheFileOnlyForItsErrors(t *testing.T) {
	const file = "../../deploy/worker.yaml"
	for _, flags := range [][]string{
		{"--nats-creds", t.TempDir()}, {"--replica-id", "a.b"}, {"--nats-url", "nats://u:p,w@h:4222"},
		{"--nats-inbox-prefix", "$JS.x"}, {"--call-timeout", "41m"}, {"--quota-history", "1m"},
	} {
		var stderr bytes.Buffer
		if code := run(append([]string{"--check-config", "--config", file}, flags...), io.Discard, &stderr); code != 2 {
			t.Errorf("%v: exit code %d, want 2", flags, code)
		}
		if out := stderr.String(); strings.Contains(out, file) || strings.Count(out, "\n") != 1 {
			t.Errorf("%v: %q; want one line that does not name the tenants file", flags, out)
		}
	}
	var stderr bytes.Buffer
	if code := run([]string{"--check-config", "--config", "absent.yaml"}, io.Discard, &stderr); code != 2 || !strings.HasPrefix(stderr.String(), "worker: absent.yaml: ") {
		t.Errorf("missing file: exit code %d, %q; want 2 and the file named", code, stderr.String())
	}
}

// TestCheckConfigMisspeltKeyIsOneClearLine: a misspelt key (the YAML
// library's "unmarshal errors:" then one indented line per key) reads as
// one sentence, not "unmarshal errors:;   line 3: ...".
func TestCheckConfigMisspeltKeyIsOneClearLine(t *testing.T) {
	path := filepath.Join(t.TempDir(), "worker.yaml")
	if err := os.WriteFile(path, []byte("tenants:\n  - name: contoso\n    limts: {}\n    maxInFlght: 2\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	var stderr bytes.Buffer
	if code := run([]string{"--check-config", "--config", path}, io.Discard, &stderr); code != 2 {
		t.Fatalf("exit code %d, want 2", code)
	}
	want := "worker: " + path + ": tenants file: yaml: unmarshal errors: line 3: tenants[0].limts: field limts not found in type config.Tenant; line 4: tenants[0].maxInFlght: field maxInFlght not found in type config.Tenant\n"
	if got := stderr.String(); got != want {
		t.Errorf("printed %q\nwant    %q", got, want)
	}
}
