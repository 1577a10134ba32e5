package main

import (
	"bytes"
	"io"
	"strings"
	"testing"
)

// A flag's value that does not read says what the flag takes, as
// offboardctl's do: the flag package's "parse error" or "value out of
// range" left the operator to guess the form, and named the flag with
// one dash, or by its variable's name alone.
func TestFlagValueErrorSaysWhatTheFlagTakes(t *testing.T) {
	for _, tt := range []struct {
		args []string
		env  [2]string
		want string
	}{
		{args: []string{"--ack-wait", "abc"}, want: "worker: --ack-wait: the value given does not read as a duration, such as 30s, 5m or 2h\n"},
		{args: []string{"--ack-wait=1d"}, want: "worker: --ack-wait: the value given does not read as a duration, such as 30s, 5m or 2h\n"},
		{args: []string{"--max-requests", "x"}, want: "worker: --max-requests: the value given does not read as a whole number\n"},
		{args: []string{"--max-requests", "99999999999999999999"}, want: "worker: --max-requests: the value given does not read as a whole number\n"},
		{args: []string{"--pprof=maybe"}, want: "worker: --pprof: the value given does not read as true or false\n"},
		{env: [2]string{"MDE_OFFBOARD_ACK_WAIT", "abc"}, want: "worker: --ack-wait (from MDE_OFFBOARD_ACK_WAIT): the value given does not read as a duration, such as 30s, 5m or 2h\n"},
		{env: [2]string{"MDE_OFFBOARD_NO_SETUP", "yes"}, want: "worker: --no-setup (from MDE_OFFBOARD_NO_SETUP): the value given does not read as true or false\n"},
		{env: [2]string{"MAX_REQUESTS", "many"}, want: "worker: --max-requests (from MAX_REQUESTS): the value given does not read as a whole number\n"},
	} {
		if tt.env[0] != "" {
			t.Setenv(tt.env[0], tt.env[1])
		}
		var stderr bytes.Buffer
		code := run(append([]string{"--config", "/nonexistent/worker.yaml", "--check-config"}, tt.args...), io.Discard, &stderr)
		// The old name's warning comes first; the refusal is the last line.
		lines := strings.SplitAfter(stderr.String(), "\n")
		last := ""
		if len(lines) > 1 {
			last = lines[len(lines)-2]
		}
		if code != 2 || last != tt.want {
			t.Errorf("%q %v: exit %d, stderr %q; want 2 and last line %q", tt.args, tt.env, code, stderr.String(), tt.want)
		}
		if tt.env[0] != "" {
			t.Setenv(tt.env[0], "")
		}
	}
}
