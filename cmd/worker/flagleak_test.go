package main

import (
	"bytes"
	"io"
	"strings"
	"testing"
)

// A flag's or a variable's value that does not read is not shown: it may
// be a password or a key given to the wrong flag, or a Secret's value
// mapped to the wrong variable. The error names the flag.
func TestFlagErrorsShowNoValue(t *testing.T) {
	const url = "nats://alice:S3CR3T@127.0.0.1:1"
	for _, tt := range []struct {
		args []string
		env  [2]string
		want string
	}{
		{args: []string{"---nats-url=" + url}, want: "bad flag syntax"},
		{args: []string{"-=" + url}, want: "bad flag syntax"},
		// A flag and its value in one argument (a container's args item
		// "--nats-url nats://..."), or joined by something else than '=':
		// the flag package takes it all for the flag's name.
		{args: []string{"--nats-url " + url}, want: "flag provided but not defined: -nats-url"},
		{args: []string{"--nats-url:" + url}, want: "flag provided but not defined: -nats-url"},
		{args: []string{"--shutdown-timeout", url}, want: "-shutdown-timeout"},
		{args: []string{"--pprof=" + url}, want: "-pprof"},
		{args: []string{"--log-level", url}, want: "--log-level"},
		{args: []string{"--log-format", url}, want: "--log-format"},
		{env: [2]string{"MDE_OFFBOARD_LOG_LEVEL", "S3CR3T"}, want: "--log-level"},
		{env: [2]string{"MDE_OFFBOARD_LOG_FORMAT", "S3CR3T"}, want: "--log-format"},
	} {
		if tt.env[0] != "" {
			t.Setenv(tt.env[0], tt.env[1])
		}
		var stderr bytes.Buffer
		code := run(append([]string{"--config", "/nonexistent/worker.yaml"}, tt.args...), io.Discard, &stderr)
		msg := stderr.String()
		if code != 2 || strings.Contains(msg, "S3CR3T") || strings.Contains(msg, "alice") || !strings.Contains(msg, tt.want) {
			t.Errorf("%q %v: exit %d, stderr %q; want 2, naming %q and not the value", tt.args, tt.env, code, msg, tt.want)
		}
		if tt.env[0] != "" {
			t.Setenv(tt.env[0], "")
		}
	}
}
