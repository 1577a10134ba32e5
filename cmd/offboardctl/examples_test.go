package main

import (
	"bytes"
	"os"
	"slices"
	"strings"
	"testing"

	"github.com/spf13/cobra"
)

// TestExamplesParse: every command an operator runs has examples in its
// --help, and each example, copied as it stands, passes every check made
// before connecting (arguments, flags, values, files): run against a
// server that is not there, it fails only on the connection, exit 1
// naming the URL, never as bad usage (exit 2).
func TestExamplesParse(t *testing.T) {
	root, _ := newRoot(&bytes.Buffer{}, &bytes.Buffer{})
	for _, cmd := range leafCommands(root) {
		if _, ok := examples[cmd]; !ok {
			t.Errorf("%s has no examples", cmd)
		}
	}
	for cmd, lines := range examples {
		for _, line := range lines {
			if strings.HasPrefix(line, "#") {
				continue
			}
			t.Run(line, func(t *testing.T) {
				t.Chdir(t.TempDir())
				args := splitExample(t, line)
				if args[0] != "offboardctl" || !strings.HasPrefix(line, cmd+" ") && line != cmd {
					t.Fatalf("example of %s: %q", cmd, line)
				}
				if i := slices.Index(args, "--csv"); i > 0 {
					if err := os.WriteFile(args[i+1], []byte("computerDnsName\npc-0001.contoso.local\n"), 0o600); err != nil {
						t.Fatal(err)
					}
				}
				var stdout, stderr bytes.Buffer
				full := append([]string{"--nats-url", "nats://127.0.0.1:1", "--connect-timeout", "200ms"}, args[1:]...)
				code := runContext(t.Context(), full, &stdout, &stderr)
				if code != exitFailed || !strings.Contains(stderr.String(), "127.0.0.1:1") {
					t.Errorf("exit %d, stderr %q: want 1 and the unreachable server named", code, stderr.String())
				}
			})
		}
	}
}

// leafCommands are the paths of the commands that run something: not
// groups, help or completion.
func leafCommands(cmd *cobra.Command) []string {
	var paths []string
	if cmd.Runnable() && !cmd.HasSubCommands() && connects(cmd) {
		paths = append(paths, cmd.CommandPath())
	}
	for _, sub := range cmd.Commands() {
		paths = append(paths, leafCommands(sub)...)
	}
	return paths
}

// splitExample splits an example line as a shell would: at spaces, but
// not inside double quotes, which it takes away.
func splitExample(t *testing.T, line string) []string {
	t.Helper()
	var (
		args   []string
		word   strings.Builder
		quoted bool
		inWord bool
	)
	for _, r := range line {
		switch {
		case r == '"':
			quoted, inWord = !quoted, true
		case r == ' ' && !quoted:
			if inWord {
				args = append(args, word.String())
				word.Reset()
			}
			inWord = false
		default:
			word.WriteRune(r)
			inWord = true
		}
	}
	if quoted {
		t.Fatalf("example %q: a quote left open", line)
	}
	if inWord {
		args = append(args, word.String())
	}
	return args
}
