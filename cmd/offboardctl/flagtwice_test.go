package main

import (
	"bytes"
	"io"
	"strings"
	"testing"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

// TestTargetFlagGivenTwice: a flag that picks what a command acts on,
// given twice with two values, is bad usage: the second replaced the
// first without a word, and `pause --priority bulk --priority normal`
// paused normal alone. The same value twice is taken.
func TestTargetFlagGivenTwice(t *testing.T) {
	t.Parallel()
	csv := writeFile(t, t.TempDir(), "wave.csv", "machineId\n"+strings.Repeat("a", 40)+"\n")
	for name, args := range map[string][]string{
		"pause priority":      {"pause", "contoso", "--priority", "bulk", "--priority", "normal"},
		"resume priority":     {"resume", "contoso", "--priority", "normal", "--priority=bulk"},
		"run tenant":          {"campaign", "run", "--tenant", "contoso", "--tenant", "fabrikam", "--csv", csv},
		"run priority":        {"campaign", "run", "--tenant", "contoso", "--csv", csv, "--priority", "bulk", "--priority", "normal"},
		"run csv":             {"campaign", "run", "--tenant", "contoso", "--csv", csv, "--csv", csv + ".old"},
		"run name":            {"campaign", "run", "--tenant", "contoso", "--csv", csv, "--name", "a", "--name", "b"},
		"cancel tenant":       {"campaign", "cancel", "--tenant", "contoso", "--tenant", "fabrikam", "--name", "w"},
		"cancel name":         {"campaign", "cancel", "--tenant", "contoso", "--name", "w1", "--name", "w2"},
		"status tenant":       {"campaign", "status", "--tenant", "contoso", "--tenant", "fabrikam", "--name", "w"},
		"plan tenant":         {"campaign", "plan", "--tenant", "contoso", "--tenant", "fabrikam", "--inactive-for", "90d"},
		"plan out":            {"campaign", "plan", "--tenant", "contoso", "--inactive-for", "90d", "--out", "a.csv", "--out", "b.csv"},
		"plan inactive twice": {"campaign", "plan", "--tenant", "contoso", "--inactive-for", "90d", "--inactive-for", "30d"},
		"dead retry seq":      {"dead", "retry", "contoso", "--seq", "2", "--seq", "3"},
		"pause as":            {"pause", "contoso", "--as", "alice", "--as", "fabrikam"},
		"pause reason":        {"pause", "contoso", "--reason", "CHG1", "--reason", "fabrikam"},
		"budget reason":       {"budget", "contoso", "5/1h", "--reason", "CHG1", "--reason=fabrikam"},
		"cancel reason":       {"campaign", "cancel", "--tenant", "contoso", "--name", "w", "--reason", "a", "--reason", "fabrikam"},
		"cancel by and as":    {"campaign", "cancel", "--tenant", "contoso", "--name", "w", "--by", "alice", "--as", "fabrikam"},
		"dead retry seq=":     {"dead", "retry", "contoso", "--seq=3", "--seq=2"},
		"run timeout":         {"campaign", "run", "--tenant", "contoso", "--csv", csv, "--timeout", "1m", "--timeout", "0"},
		"run comment":         {"campaign", "run", "--tenant", "contoso", "--csv", csv, "--comment", "CHG1", "--comment", "fabrikam"},
		"run rate":            {"campaign", "run", "--tenant", "contoso", "--csv", csv, "--rate", "100/1m", "--rate", "5/1m"},
		"status rate":         {"campaign", "status", "--tenant", "contoso", "--name", "w", "--rate", "100/1m", "--rate", "5/1m"},
		"plan timeout":        {"campaign", "plan", "--tenant", "contoso", "--inactive-for", "90d", "--timeout", "1m", "--timeout", "2m"},
	} {
		var out, errb bytes.Buffer
		// Nothing listens there: a usage error comes before connecting.
		code := run(append([]string{"--nats-url", "nats://127.0.0.1:1"}, args...), &out, &errb)
		msg := strings.TrimSpace(errb.String())
		if code != exitUsage || !strings.Contains(msg, "given twice") || strings.Contains(msg, "\n") {
			t.Errorf("%s: exit %d, stderr %q; want exit %d and one line saying the flag was given twice", name, code, msg, exitUsage)
		}
		if strings.Contains(msg, "fabrikam") || strings.Contains(msg, "normal") {
			t.Errorf("%s: the error quotes a value: %q", name, msg)
		}
	}

	// The same value twice (an alias and the command line agreeing) is
	// no mistake: the command goes on, to the connection refused here.
	var out, errb bytes.Buffer
	code := run([]string{"--nats-url", "nats://127.0.0.1:1", "--connect-timeout", "1s", "pause", "contoso", "--priority", "bulk", "--priority", "bulk"}, &out, &errb)
	if code == exitUsage {
		t.Errorf("the same --priority twice: exit %d, stderr %q; want it taken", code, errb.String())
	}
	out.Reset()
	errb.Reset()
	code = run([]string{"--nats-url", "nats://127.0.0.1:1", "--connect-timeout", "1s", "dead", "retry", "contoso", "--seq", "7", "--seq", "07"}, &out, &errb)
	if code == exitUsage {
		t.Errorf("the same --seq twice: exit %d, stderr %q; want it taken", code, errb.String())
	}
}

// TestOnceFlagHelp: a flag made to refuse a second value (once) shows in
// the help as it did before: `campaign run --help` said --timeout's
// default was "0s", which pflag leaves out for a duration flag's zero.
func TestOnceFlagHelp(t *testing.T) {
	t.Parallel()
	root, _ := newRoot(io.Discard, io.Discard)
	var walk func(cmd *cobra.Command)
	n := 0
	walk = func(cmd *cobra.Command) {
		cmd.LocalFlags().VisitAll(func(f *pflag.Flag) {
			v, ok := f.Value.(*onceOf)
			if !ok {
				return
			}
			n++
			plain := pflag.NewFlagSet("plain", pflag.ContinueOnError)
			plain.AddFlag(&pflag.Flag{Name: f.Name, Usage: f.Usage, Hidden: f.Hidden, Value: v.Value, DefValue: v.Value.String()}) // nothing parsed: the default
			once := pflag.NewFlagSet("once", pflag.ContinueOnError)
			once.AddFlag(f)
			if got, want := once.FlagUsages(), plain.FlagUsages(); got != want {
				t.Errorf("%s --%s: help %q, want %q", cmd.CommandPath(), f.Name, got, want)
			}
		})
		for _, sub := range cmd.Commands() {
			walk(sub)
		}
	}
	walk(root)
	if n == 0 {
		t.Fatal("no flag made with once")
	}
}
