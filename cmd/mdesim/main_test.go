package main

import (
	"bytes"
	"errors"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestBadFlagIsOneError: a bad flag is an error and nothing else (run
// prints it as one line); --help prints the usage.
func TestBadFlagIsOneError(t *testing.T) {
	fixtures := filepath.Join(t.TempDir(), "fixtures.yaml")
	if err := os.WriteFile(fixtures, []byte("tenants:\n  - bogus: 1\n    other: 2\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	badFixtures := filepath.Join(t.TempDir(), "bad.yaml")
	if err := os.WriteFile(badFixtures, []byte("tenants:\n  - generate: -1\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	// Two billion devices would be made in memory before the first answer.
	hugeFixtures := filepath.Join(t.TempDir(), "huge.yaml")
	if err := os.WriteFile(hugeFixtures, []byte("tenants:\n  - tenantId: 99999999-2222-3333-4444-555555555555\n    generate: 2000000000\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{
		{"--nope"}, {"--latency", "soon"}, {"--limits", "offboard=100"}, {"--listen", "8443"},
		{"--machines", "-1"}, {"--fail-rate", "1.5"}, {"--spurious-404-rate", "-0.1"}, {"--lost-answer-rate", "NaN"},
		{"--latency", "-1s"}, {"--action-complete-after", "-1s"}, {"--token-lifetime", "0s"},
		{"--fixtures", fixtures}, {"--fixtures", badFixtures}, {"--fixtures", hugeFixtures}, {"--machines", "2000000000"},
	} {
		var stderr bytes.Buffer
		_, err := parseFlags(args, &stderr)
		if err == nil || errors.Is(err, flag.ErrHelp) {
			t.Errorf("%v: error %v, want a parse error", args, err)
		} else if strings.Contains(err.Error(), "\n") {
			t.Errorf("%v: error %q is more than one line", args, err)
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

// TestFixtureMachinesCounted: the line of a fixtures tenant counts the
// devices it generates besides those it lists, as the simulator serves
// both.
func TestFixtureMachinesCounted(t *testing.T) {
	fixtures := filepath.Join(t.TempDir(), "fixtures.yaml")
	data := "tenants:\n  - tenantId: 99999999-2222-3333-4444-555555555555\n    machines:\n      - {computerDnsName: old-1.fab.local, lastSeenAgo: 120d}\n    generate: 30\n"
	if err := os.WriteFile(fixtures, []byte(data), 0o600); err != nil {
		t.Fatal(err)
	}
	c, err := parseFlags([]string{"--fixtures", fixtures, "--client-secret", "s"}, &bytes.Buffer{})
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	printInfo(&out, c, "https://127.0.0.1:8443", false)
	if !strings.Contains(out.String(), "tenant 99999999-2222-3333-4444-555555555555, client , 31 machines") {
		t.Errorf("printed %q, want the fixtures tenant's 31 machines", out.String())
	}
}

// The secret itself given as --client-secret-file is not shown in the
// error: the file's path is named by its flag only.
func TestClientSecretFileErrorShowsNoSecret(t *testing.T) {
	empty := filepath.Join(t.TempDir(), "empty")
	if err := os.WriteFile(empty, []byte(" \n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, file := range []string{"Xy7Q~S3CR3T.value-0123456789", empty, t.TempDir()} {
		var stderr bytes.Buffer
		_, err := parseFlags([]string{"--client-secret-file", file}, &stderr)
		if err == nil || strings.Contains(err.Error(), "S3CR3T") || strings.Contains(err.Error(), file) || !strings.Contains(err.Error(), "--client-secret-file") {
			t.Errorf("error %v; want one naming --client-secret-file, not its value", err)
		}
	}
}

// TestIDsMustBeGUIDs: a --tenant-id or --client-id that is no GUID is bad
// usage, as the worker's tenants file refuses it: a simulator started
// with a mistyped id answered every login of the worker with an unknown
// tenant, and the mistake showed as rejected credentials.
func TestIDsMustBeGUIDs(t *testing.T) {
	for _, args := range [][]string{
		{"--tenant-id", "notaguid"}, {"--tenant-id", "11111111-2222-3333-4444-55555555555"},
		{"--client-id", "{66666666-7777-8888-9999-000000000000}"}, {"--client-id", "66666666777788889999000000000000"},
	} {
		_, err := parseFlags(append(args, "--client-secret", "s"), &bytes.Buffer{})
		if err == nil || !strings.HasPrefix(err.Error(), args[0]+":") || strings.Contains(err.Error(), "\n") {
			t.Errorf("%v: error %v, want one line naming %s", args, err, args[0])
		}
	}
	if _, err := parseFlags([]string{"--tenant-id", "11111111-2222-3333-4444-555555555555", "--client-id", "66666666-7777-8888-9999-00000000000A", "--client-secret", "s"}, &bytes.Buffer{}); err != nil {
		t.Errorf("GUIDs: %v", err)
	}
}
