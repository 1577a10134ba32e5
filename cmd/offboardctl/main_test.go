package main

import (
	"bytes"
	"strings"
	"testing"
)

// Bad usage is one line on stderr and exit status 2.
func TestBadUsage(t *testing.T) {
	t.Parallel()
	for _, args := range [][]string{
		{"--no-such-flag"},
		{"--tlscert", "c.pem"},
	} {
		var out, errb bytes.Buffer
		if code := run(args, &out, &errb); code != exitUsage {
			t.Errorf("%v: exit %d, want %d (stderr %q)", args, code, exitUsage, errb.String())
		}
		if lines := strings.Count(strings.TrimSpace(errb.String()), "\n"); lines != 0 {
			t.Errorf("%v: %d lines on stderr, want one: %q", args, lines+1, errb.String())
		}
	}
}

func TestVersion(t *testing.T) {
	t.Parallel()
	var out, errb bytes.Buffer
	if code := run([]string{"--version"}, &out, &errb); code != exitOK || !strings.Contains(out.String(), "offboardctl version") {
		t.Errorf("--version: exit %d, stdout %q", code, out.String())
	}
}
