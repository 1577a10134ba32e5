package main

import (
	"io"
	"testing"
	"time"
)

// TestFlagDefaultsAreTheContracts: the defaults the contract's table of
// the worker's flags names, and the request stream's duplicate window
// (24h), with no flag and no variable given.
func TestFlagDefaultsAreTheContracts(t *testing.T) {
	for _, name := range []string{"CONFIG", "NATS_URL", "DATA_DIR", "SUBJECT_PREFIX", "LISTEN", "LOG_LEVEL", "LOG_FORMAT", "DUPLICATE_WINDOW"} {
		t.Setenv(name, "") // empty sets nothing
		t.Setenv(envPrefix+name, "")
	}
	c, err := parseFlags(nil, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range []struct{ flag, got, want string }{
		{"--config", c.o.ConfigPath, "worker.yaml"},
		{"--nats-url", c.o.NATSURL, ""}, // an embedded server
		{"--data-dir", c.o.DataDir, "./data"},
		{"--subject-prefix", c.o.SubjectPrefix, "mde.offboard"},
		{"--listen", c.o.Listen, ":9090"},
		{"--log-level", c.logLevel, "info"},
		{"--log-format", c.logFormat, "json"},
		{"--duplicate-window", c.o.Queue.Duplicates.String(), (24 * time.Hour).String()},
	} {
		if f.got != f.want {
			t.Errorf("%s defaults to %q, want %q as the contract says", f.flag, f.got, f.want)
		}
	}
}
