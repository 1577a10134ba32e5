package main

import (
	"bytes"
	"strings"
	"testing"
)

// TestCheckConfigNamesOldEnvironmentNames: a variable read under its old
// name (NATS_URL) sets its flag for --check-config as for the worker,
// and the check says so as the worker's start does, never its value:
// it passed without a word, and a forgotten NATS_URL in the pod's
// environment was first seen at the start.
func TestCheckConfigNamesOldEnvironmentNames(t *testing.T) {
	t.Setenv("NATS_URL", "nats://worker:s3cret-value@127.0.0.1:4222")
	var stdout, stderr bytes.Buffer
	if code := run([]string{"--check-config", "--config", exampleConfig(t)}, &stdout, &stderr); code != 0 {
		t.Fatalf("--check-config: exit %d, stderr %q", code, stderr.String())
	}
	for _, want := range []string{"NATS_URL", "MDE_OFFBOARD_NATS_URL"} {
		if !strings.Contains(stderr.String(), want) {
			t.Errorf("--check-config stderr %q lacks %q", stderr.String(), want)
		}
	}
	if strings.Contains(stderr.String()+stdout.String(), "s3cret-value") {
		t.Error("--check-config shows a variable's value")
	}
}
