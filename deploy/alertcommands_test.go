package deploy

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"
)

// offboardctlCommand is an offboardctl command in an alert's text: up to
// the punctuation that ends it in a sentence.
var offboardctlCommand = regexp.MustCompile(`offboardctl [^;,()"]+`)

// TestAlertCommandsAreWhole: every offboardctl command an alert tells the
// one paged to run, as its unit tests render it, is a whole command:
// offboardctl takes its arguments and goes on to connect to NATS (exit 1
// here, with no server), not a usage error (exit 2).
func TestAlertCommandsAreWhole(t *testing.T) {
	if testing.Short() {
		t.Skip("builds offboardctl")
	}
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Skip("no go command to build offboardctl")
	}
	ctl := filepath.Join(t.TempDir(), "offboardctl")
	if out, err := exec.CommandContext(t.Context(), goBin, "build", "-o", ctl, "../cmd/offboardctl").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v: %s", err, out)
	}
	commands := alertTestCommands(t)
	if len(commands) == 0 {
		t.Fatal("no offboardctl command in the alerts' rendered descriptions")
	}
	for _, c := range commands {
		args := append(strings.Fields(strings.TrimSuffix(strings.TrimSpace(c), "."))[1:],
			"--nats-url", "nats://127.0.0.1:1", "--connect-timeout", "100ms")
		cmd := exec.CommandContext(t.Context(), ctl, args...)
		cmd.Env = append(os.Environ(), "MDE_OFFBOARD_NATS_URL=", "NATS_URL=")
		out, err := cmd.CombinedOutput()
		if ee := (*exec.ExitError)(nil); errors.As(err, &ee) && ee.ExitCode() == 2 {
			t.Errorf("an alert says to run %q: offboardctl refuses it as bad usage: %s", strings.TrimSpace(c), out)
		}
	}
}

// alertTestCommands is the offboardctl commands in the descriptions the
// alerts' unit tests expect.
func alertTestCommands(t *testing.T) []string {
	t.Helper()
	data, err := os.ReadFile("prometheus/alerts_test.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var f struct {
		Tests []struct {
			AlertRuleTests []struct {
				ExpAlerts []struct {
					ExpAnnotations map[string]string `yaml:"exp_annotations"`
				} `yaml:"exp_alerts"`
			} `yaml:"alert_rule_test"`
		} `yaml:"tests"`
	}
	if err := yaml.Unmarshal(data, &f); err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	var commands []string
	for _, tc := range f.Tests {
		for _, rt := range tc.AlertRuleTests {
			for _, a := range rt.ExpAlerts {
				for _, c := range offboardctlCommand.FindAllString(a.ExpAnnotations["description"], -1) {
					if !seen[c] {
						seen[c] = true
						commands = append(commands, c)
					}
				}
			}
		}
	}
	return commands
}
