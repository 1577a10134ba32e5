package main

import (
	"strings"
	"testing"

	"github.com/contoso-secops/mde-offboard/offboard"
)

// TestLongValueQuotedShort: a value given on the command line that is
// refused (a file pasted in, a runaway variable) is quoted short in the
// one line that refuses it, not whole: ten thousand characters made the
// line ten thousand long.
func TestLongValueQuotedShort(t *testing.T) {
	t.Parallel()
	long := strings.Repeat("x", 10000)
	for _, args := range [][]string{
		{"pause", long},
		{"pause", "contoso", "--priority", long},
		{"resume", long},
		{"budget", long, "5/1h"},
		{"status", long},
		{"dead", "ls", long},
		{"dead", "ls", "--code", long},
		{"dead", "retry", long, "--all"},
		{"dead", "retry", "contoso", "--all", "--code", long},
		{"--subject-prefix", long + " x", "status"},
		{long},
		{"dead", long},
		{"help", long},
	} {
		code, out, errs := ctl(t, "nats://127.0.0.1:1", args...)
		if code != exitUsage || out != "" || strings.Count(errs, "\n") != 1 || len(errs) > 400 {
			t.Errorf("%.40q...: exit %d, stdout %q, stderr %d bytes: %.200q", args, code, out, len(errs), errs)
		}
	}
}

// TestLongPrefixNotTheWorkersQuotedShort: a --subject-prefix that can
// start a subject, but is not the worker's, is quoted short in the line
// that refuses it too, however long it is (offboard.MaxPrefixLength; a
// longer one is refused as usage).
func TestLongPrefixNotTheWorkersQuotedShort(t *testing.T) {
	t.Parallel()
	url, _ := natsWithStreams(t)
	code, out, errs := ctl(t, url, "--subject-prefix", strings.Repeat("x", offboard.MaxPrefixLength), "status")
	if code != exitFailed || out != "" || strings.Count(errs, "\n") != 1 || len(errs) > 400 || !strings.Contains(errs, "is not the worker's") {
		t.Errorf("exit %d, stdout %q, stderr %d bytes: %.200q", code, out, len(errs), errs)
	}
}

// TestLongFlagValueQuotedShort: the values of the campaign and plan
// commands' flags, and a shell for completion, are quoted short as well
// when they are refused.
func TestLongFlagValueQuotedShort(t *testing.T) {
	t.Parallel()
	long := strings.Repeat("x", 10000)
	for _, args := range [][]string{
		{"campaign", "status", "--tenant", "contoso", "--name", long},
		{"campaign", "run", "--tenant", "contoso", "--csv", "devices.csv", "--priority", long},
		{"campaign", "plan", "--tenant", long, "--inactive-for", "90d"},
		{"campaign", "plan", "--tenant", "contoso", "--inactive-for", long},
		{"campaign", "plan", "--tenant", "contoso", "--inactive-for", "90d", "--health", long},
		{"campaign", "plan", "--tenant", "contoso", "--inactive-for", "90d", "--os", long + " "},
		{"campaign", "run", "--tenant", "contoso", "--csv", "devices.csv", "--rate", long},
		{"campaign", "run", "--tenant", "contoso", "--csv", "devices.csv", "--rate", "100/1m," + long},
		{"campaign", "status", "--tenant", "contoso", "--name", "wave", "--rate", long},
		{"completion", long},
	} {
		code, out, errs := ctl(t, "nats://127.0.0.1:1", args...)
		if code != exitUsage || out != "" || strings.Count(errs, "\n") != 1 || len(errs) > 400 {
			t.Errorf("%.80q...: exit %d, stdout %q, stderr %d bytes: %.200q", args, code, out, len(errs), errs)
		}
	}
}
