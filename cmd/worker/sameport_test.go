package main

import (
	"bytes"
	"io"
	"testing"
)

// TestListenAndEmbeddedListenOnOnePort: --listen and --embedded-listen on
// one port of one address failed the start once the HTTP listener had
// taken it, exit 1, with the embedded server's "address already in use",
// which sent the operator looking for another process; --check-config
// said valid. Refused before anything starts, exit 2, naming both flags.
func TestListenAndEmbeddedListenOnOnePort(t *testing.T) {
	for _, c := range []struct{ listen, embedded string }{
		{"127.0.0.1:19191", "127.0.0.1:19191"},
		{":4222", "127.0.0.1:4222"},
		{"127.0.0.1:9090", "0.0.0.0:9090"},
		{"[::]:9090", "localhost:9090"},
		{"localhost:9090", "127.0.0.1:9090"},
		{"", ":9090"}, // empty: the default, :9090
	} {
		refusedInOneLine(t, "--listen "+c.listen+" --embedded-listen "+c.embedded,
			[]string{"--config", tenantsFile(t), "--data-dir", t.TempDir(), "--listen", c.listen, "--embedded-listen", c.embedded},
			nil, []string{"--embedded-listen", "--listen"})
	}
	// Other ports, or another host's, go together; so does a free port
	// for each.
	for _, c := range []struct{ listen, embedded string }{
		{"127.0.0.1:9090", "127.0.0.1:4222"}, {"127.0.0.1:0", "127.0.0.1:0"}, {"127.0.0.2:9090", "127.0.0.1:9090"},
	} {
		var stderr bytes.Buffer
		if code := run([]string{"--config", tenantsFile(t), "--listen", c.listen, "--embedded-listen", c.embedded, "--check-config"}, io.Discard, &stderr); code != 0 {
			t.Errorf("--listen %s --embedded-listen %s: exit %d, %s", c.listen, c.embedded, code, stderr.String())
		}
	}
}
