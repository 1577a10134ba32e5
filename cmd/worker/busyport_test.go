package main

import (
	"bytes"
	"io"
	"net"
	"strings"
	"testing"
)

// TestBusyPortNamesItsFlag: a port another process listens on fails the
// start, exit 1, in one line naming the flag that chose it and what to
// do. Before, the embedded server's own words ("Error listening on port:
// 127.0.0.1:4222, ... address already in use") named no setting, though
// a NATS server of the operator's own on the default port is the likely
// cause and --nats-url the fix; --listen's named the address alone.
func TestBusyPortNamesItsFlag(t *testing.T) {
	t.Parallel()
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	addr := busy.Addr().String()
	for _, c := range []struct {
		what string
		args []string
		want []string
	}{
		{"embedded server", []string{"--embedded-listen", addr, "--listen", "127.0.0.1:0"},
			[]string{"--embedded-listen " + addr, "address already in use", "another NATS server", "--nats-url"}},
		{"HTTP", []string{"--listen", addr, "--embedded-listen", "127.0.0.1:0"},
			[]string{"--listen " + addr, "address already in use", "give another --listen"}},
	} {
		var stderr bytes.Buffer
		args := append([]string{"--config", tenantsFile(t), "--data-dir", t.TempDir()}, c.args...)
		code := run(args, io.Discard, &stderr)
		out := stderr.String()
		ok := code == 1 && strings.Count(out, "\n") == 1
		for _, w := range c.want {
			ok = ok && strings.Contains(out, w)
		}
		if !ok {
			t.Errorf("%s port taken: exit %d, stderr %q; want 1 and one line saying %q", c.what, code, out, c.want)
		}
	}
}
