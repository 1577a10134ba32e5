package main

import (
	"io"
	"testing"
)

// TestEmptyEnvironmentVariablesSetNothing: an empty variable sets no
// flag under its old name, as under its MDE_OFFBOARD_ name: a generic
// name left empty in a container's environment (CONFIG=, PPROF=, a
// template's value that expanded to nothing) made the worker refuse to
// start, or read a tenants file named "", while the same variable with
// the prefix was ignored.
func TestEmptyEnvironmentVariablesSetNothing(t *testing.T) {
	for _, name := range []string{"CONFIG", "SHUTDOWN_TIMEOUT", "PPROF", "LOG_FORMAT", "MAX_REQUESTS"} {
		t.Setenv(name, "")
		t.Setenv(envPrefix+name, "")
	}
	c, err := parseFlags(nil, io.Discard)
	if err != nil {
		t.Fatalf("parseFlags with empty variables: %v", err)
	}
	if c.o.ConfigPath != "worker.yaml" || c.logFormat != "json" {
		t.Errorf("config %q, log format %q; want the defaults", c.o.ConfigPath, c.logFormat)
	}
	if len(c.oldEnv) != 0 {
		t.Errorf("old variables reported: %v, want none", c.oldEnv)
	}
}
