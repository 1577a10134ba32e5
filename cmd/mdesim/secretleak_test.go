package main

import (
	"bytes"
	"strings"
	"testing"
)

// TestUsageErrorsShowNoSecret: a flag that lost its value (a shell
// variable not set: --listen "$ADDR" --client-secret "$SECRET") takes the
// next flag as its value, and the secret is left as an argument, or is
// part of the value taken. The simulator refuses such a command line
// without quoting what it was given, as the worker and offboardctl do:
// it printed "unexpected arguments: [<secret>]", quoted the value of
// --listen, --limits and --fixtures in their errors, and took
// "--client-secret=<secret>" as the file --ca-out names and printed it.
func TestUsageErrorsShowNoSecret(t *testing.T) {
	const secret = "hunter2-S3CR3T"
	leaks := 0
	cases := [][]string{
		{"--listen", "--client-secret", secret},
		{"--tenant-id", "--client-secret", secret},
		{"-v", secret},
		{"--listen", "--client-secret=" + secret},
		{"--limits", "--client-secret=" + secret},
		{"--limits", "offboard=100/1m;" + secret},
		{"--limits", "offboard=" + secret},
		{"--limits", "offboard=100/" + secret},
		{"--fixtures", "--client-secret=" + secret},
		{"--ca-out", "--client-secret=" + secret},
		{"--client-secret-file", "--client-secret=" + secret},
	}
	for _, args := range cases {
		var stderr bytes.Buffer
		c, err := parseFlags(args, &stderr)
		shown := stderr.String()
		if err != nil {
			shown += err.Error()
		} else {
			// Taken: what the simulator prints as it starts.
			printInfo(&stderr, c, "https://127.0.0.1:8443", false)
			shown += stderr.String()
			t.Errorf("%q: taken, want bad usage", args)
		}
		if strings.Contains(shown, secret) {
			leaks++
			t.Errorf("%q: shows the secret: %q", args, shown)
		}
	}
	t.Logf("%d of %d command lines showed the secret", leaks, len(cases))
}
