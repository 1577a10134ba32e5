package main

import (
	"bytes"
	"io"
	"strings"
	"testing"
)

// A setting that reads as a string but is not what it should be (a
// password, a NATS URL or a Secret's value given to the wrong flag or
// variable) is refused naming the setting, not showing its value: at
// start, in the log, and by --check-config.
func TestBadSettingsShowNoValue(t *testing.T) {
	const url = "nats://alice:S3CR3T@127.0.0.1:1"
	checkShowsNoValue(t, []settingCase{
		{[]string{"--nats-inbox-prefix", "S3CR3T x"}, "--nats-inbox-prefix"},
		{[]string{"--nats-inbox-prefix", "$JS.S3CR3T"}, "--nats-inbox-prefix"},
		{[]string{"--subject-prefix", "S3CR3T x"}, "--subject-prefix"},
		{[]string{"--replica-id", url}, "--replica-id"},
	})
}

// settingCase is a setting refused, and the flag its error names.
type settingCase struct {
	args []string
	want string
}

// checkShowsNoValue runs the worker, then --check-config, with each
// case's flags: each must exit 2 naming the flag, and show neither
// "S3CR3T" nor "alice".
func checkShowsNoValue(t *testing.T, cases []settingCase) {
	t.Helper()
	cfg := tenantsFile(t)
	for _, tt := range cases {
		for _, check := range []bool{false, true} {
			args := append([]string{"--config", cfg, "--data-dir", t.TempDir()}, tt.args...)
			if check {
				args = append(args, "--check-config")
			}
			var stderr bytes.Buffer
			code := run(args, io.Discard, &stderr)
			msg := stderr.String()
			if code != 2 || strings.Contains(msg, "S3CR3T") || strings.Contains(msg, "alice") || !strings.Contains(msg, tt.want) {
				t.Errorf("%q: exit %d, stderr %q; want 2, naming %s and not the value", args[4:], code, msg, tt.want)
			}
		}
	}
}

// An address that is no host and port number (a NATS URL given to the
// wrong flag) is refused before anything starts, and by --check-config,
// without being shown: the listener's own error quotes it whole.
func TestBadAddressesShowNoValue(t *testing.T) {
	const url = "nats://alice:S3CR3T@127.0.0.1:1"
	checkShowsNoValue(t, []settingCase{
		{[]string{"--listen", url}, "--listen"},
		{[]string{"--listen", "alice:S3CR3T"}, "--listen"},
		{[]string{"--listen", "alice@S3CR3T:80"}, "--listen"},
		{[]string{"--listen", "127.0.0.1:0", "--embedded-listen", url}, "--embedded-listen"},
		{[]string{"--listen", "127.0.0.1:0", "--embedded-listen", "S3CR3T"}, "--embedded-listen"},
		{[]string{"--listen", "127.0.0.1:0", "--embedded-listen", "alice:S3CR3T"}, "--embedded-listen"},
	})
}
