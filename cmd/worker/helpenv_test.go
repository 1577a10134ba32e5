package main

import (
	"bytes"
	"io"
	"strings"
	"testing"
)

// TestHelpNamesTheVariables: --help says that every flag has its
// environment variable, and how it is named, as the contract and the
// README say; the list of flags alone named none, where offboardctl's
// help names each.
func TestHelpNamesTheVariables(t *testing.T) {
	t.Parallel()
	var stderr bytes.Buffer
	if code := run([]string{"--help"}, io.Discard, &stderr); code != 0 {
		t.Fatalf("--help: exit %d", code)
	}
	out := stderr.String()
	for _, want := range []string{"-nats-url string", "MDE_OFFBOARD_NATS_URL", "without the prefix (NATS_URL"} {
		if !strings.Contains(out, want) {
			t.Errorf("--help does not say %q:\n%s", want, out)
		}
	}
}
