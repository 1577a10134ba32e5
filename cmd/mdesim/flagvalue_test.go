package main

import (
	"io"
	"strings"
	"testing"
)

// A flag value that does not read names the flag and the form it takes,
// as the worker's and offboardctl's do: the flag package said "parse
// error", and quoted the value, which may be a secret given to the
// wrong flag.
func TestFlagValueSaysWhatTheFlagTakes(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--latency", "s3cret"}, "--latency: the value given does not read as a duration, such as"},
		{[]string{"--machines", "s3cret"}, "--machines: the value given does not read as a whole number"},
		{[]string{"--fail-rate", "s3cret"}, "--fail-rate: the value given does not read as a number, such as 0.05"},
		{[]string{"--http2=s3cret"}, "--http2: the value given does not read as true or false"},
		{[]string{"--login-fault", "s3cret"}, "--login-fault: "},
	} {
		_, err := parseFlags(tc.args, io.Discard)
		if err == nil || !strings.HasPrefix(err.Error(), tc.want) {
			t.Errorf("%v: error %v, want one beginning %q", tc.args, err, tc.want)
		}
		if err != nil && strings.Contains(err.Error(), "s3cret") {
			t.Errorf("%v: error %q shows the value", tc.args, err)
		}
	}
}
