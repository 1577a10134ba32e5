package main

import (
	"bytes"
	"testing"
)

// A flag's value that does not read says what the flag takes in words:
// "does not read as a uint64" or "as a bool" named Go's types, and
// --seq's "uint64" left out that it is the number dead ls shows.
func TestFlagValueSaysWhatTheFlagTakes(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		args []string
		want string
	}{
		{[]string{"dead", "retry", "contoso", "--seq", "-1"}, "offboardctl: --seq: the value given does not read as a dead letter's sequence, a whole number as dead ls shows it\n"},
		{[]string{"status", "--json=maybe"}, "offboardctl: --json: the value given does not read as true or false\n"},
		{[]string{"campaign", "run", "--tenant", "contoso", "--csv", "x.csv", "--timeout", "5"}, "offboardctl: --timeout: the value given does not read as a duration, such as 30s, 5m or 2h\n"},
		{[]string{"--connect-timeout", "abc", "status"}, "offboardctl: --connect-timeout: the value given does not read as a duration, such as 30s, 5m or 2h\n"},
	} {
		var out, errb bytes.Buffer
		// Refused before connecting: no server is asked.
		code := run(append([]string{"--nats-url", "nats://127.0.0.1:1"}, tt.args...), &out, &errb)
		if code != exitUsage || out.Len() != 0 || errb.String() != tt.want {
			t.Errorf("%q: exit %d, stdout %q, stderr %q; want %d and %q", tt.args, code, out.String(), errb.String(), exitUsage, tt.want)
		}
	}
}
