package main

import (
	"bytes"
	"errors"
	"flag"
	"strings"
	"testing"
)

// TestBadFlagIsOneError: a bad flag is an error and nothing else (run
// prints it as one line); --help prints the usage.
func TestBadFlagIsOneError(t *testing.T) {
	for _, args := range [][]string{{"--nope"}, {"--latency", "soon"}, {"--limits", "offboard=100"}, {"--listen", "8443"}} {
		var stderr bytes.Buffer
		if _, err := parseFlags(args, &stderr); err == nil || errors.Is(err, flag.ErrHelp) {
			t.Errorf("%v: error %v, want a parse error", args, err)
		}
		if stderr.Len() != 0 {
			t.Errorf("%v: printed %q besides the error", args, stderr.String())
		}
	}
	var stderr bytes.Buffer
	if _, err := parseFlags([]string{"--help"}, &stderr); !errors.Is(err, flag.ErrHelp) {
		t.Errorf("--help: %v", err)
	}
	if !strings.Contains(stderr.String(), "Usage of mdesim:") || !strings.Contains(stderr.String(), "-latency") {
		t.Errorf("--help printed %q", stderr.String())
	}
}
