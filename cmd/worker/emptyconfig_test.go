package main

import (
	"bytes"
	"io"
	"testing"
)

// TestEmptyConfigFlagIsNamed: --config "" (a variable expanded to
// nothing on the command line) read a file named "", and said
// "worker: : tenants file: open : no such file or directory", naming
// neither the flag nor a file. It now names the flag, at start and from
// --check-config.
func TestEmptyConfigFlagIsNamed(t *testing.T) {
	for _, args := range [][]string{{"--config", "", "--check-config"}, {"--config", ""}} {
		var stderr bytes.Buffer
		code := run(args, io.Discard, &stderr)
		if out := stderr.String(); code != 2 || out != "worker: --config: empty; give the tenants file, such as --config worker.yaml\n" {
			t.Errorf("%q: exit code %d, %q; want 2 and one line naming --config", args, code, out)
		}
	}
}
