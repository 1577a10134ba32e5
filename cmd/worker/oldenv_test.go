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

// TestRefusedValueOfAnOldEnvironmentNameNamesIt: a generic variable
// already in a container's environment (LOG_LEVEL, ACK_WAIT) sets its
// flag; when its value is refused, the variable is named beside the
// flag's error, at the start and by --check-config, as when it is taken:
// the error alone named a flag nobody gave. So is a misspelt
// MDE_OFFBOARD_ variable, which may be the one meant. Never a value.
func TestRefusedValueOfAnOldEnvironmentNameNamesIt(t *testing.T) {
	for _, tt := range []struct{ name, value, flag string }{
		{"LOG_LEVEL", "trace-s3cret", "--log-level"},
		{"LOG_FORMAT", "xml-s3cret", "--log-format"},
		{"ACK_WAIT", "1ms", "--ack-wait"},
		{"STREAM_REPLICAS", "9", "--stream-replicas"},
	} {
		for _, check := range []bool{false, true} {
			t.Run(tt.name, func(t *testing.T) {
				t.Setenv(tt.name, tt.value)
				t.Setenv("MDE_OFFBOARD_SHUTDOWN_TIMOUT", "2m")
				args := []string{"--config", "../../deploy/worker.yaml"}
				if check {
					args = append(args, "--check-config")
				}
				var stdout, stderr bytes.Buffer
				code := run(args, &stdout, &stderr)
				msg := stderr.String()
				for _, want := range []string{tt.flag, tt.name + " without the MDE_OFFBOARD_ prefix", "MDE_OFFBOARD_SHUTDOWN_TIMOUT"} {
					if !strings.Contains(msg, want) {
						t.Errorf("check %v: stderr %q lacks %q", check, msg, want)
					}
				}
				if code != 2 || strings.Contains(msg+stdout.String(), "s3cret") {
					t.Errorf("check %v: exit %d, stderr %q; want 2, no value", check, code, msg)
				}
			})
		}
	}
}
