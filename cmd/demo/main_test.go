package main

import (
	"bytes"
	"errors"
	"flag"
	"strings"
	"testing"
)

// TestArgs: the demo takes no arguments; --help prints the usage, and
// anything else is one error (run prints it as one line and exits 2)
// before anything starts.
func TestArgs(t *testing.T) {
	var out bytes.Buffer
	if err := parseArgs(nil, &out); err != nil || out.Len() != 0 {
		t.Errorf("no arguments: %v, printed %q", err, out.String())
	}
	if err := parseArgs([]string{"--help"}, &out); !errors.Is(err, flag.ErrHelp) {
		t.Errorf("--help: %v", err)
	}
	if !strings.HasPrefix(out.String(), "Usage: demo") || !strings.Contains(out.String(), "DEMO_KEEP") {
		t.Errorf("--help printed %q", out.String())
	}
	for _, args := range [][]string{{"--keep"}, {"stray"}, {"--", "x"}} {
		out.Reset()
		err := parseArgs(args, &out)
		if err == nil || errors.Is(err, flag.ErrHelp) || strings.Contains(err.Error(), "\n") {
			t.Errorf("%q: error %v, want one line", args, err)
		}
		if out.Len() != 0 {
			t.Errorf("%q: printed %q", args, out.String())
		}
	}
}
