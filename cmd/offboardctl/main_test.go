package main

import (
	"bytes"
	"context"
	"errors"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/contoso-secops/mde-offboard/internal/queue/natstest"
)

// Bad usage is one line on stderr and exit status 2, before connecting
// (nothing listens at the URL given).
func TestBadUsage(t *testing.T) {
	t.Parallel()
	for _, args := range [][]string{
		{"--no-such-flag"},
		{"--tlscert", "c.pem"},
		{"bogus"},
		{"bogus", "--help"},
		{"campaign", "bogus"},
		{"campaign", "bogus", "-h"},
		{"dead", "lst", "--help"},
		{"help", "bogus"},
		{"help", "campaign", "bogus"},
		{"completion"},
		{"completion", "tcsh"},
		{"completion", "bash", "extra"},
		{"--nats-url", "", "status"},
		{"--nats-url", " ", "status"},
		{"--subject-prefix", "", "status"},
		{"--subject-prefix", "mde offboard", "status"},
		{"--subject-prefix", "mde.*", "status"},
		{"--subject-prefix", "mde.>", "status"},
		{"--subject-prefix", "mde>x", "status"},
		{"--subject-prefix", "a..b", "status"},
		{"--subject-prefix", ".mde", "status"},
		{"--subject-prefix", "mde.", "status"},
		{"--subject-prefix", "mde\tx", "status"},
		{"pause", "contoso", "--priority", ""},
		{"resume", "contoso", "--priority", ""},
		{"pause", ""},
		{"--nats-inbox-prefix", "mde.offboard.request.contoso", "status"},
		{"--nats-inbox-prefix", "$JS.x", "status"},
		{"--nats-inbox-prefix", "_INBOX_\x01", "status"},
		{"--nats-inbox-prefix", "_INBOX_\u00a0x", "status"},
		{"dead", "retry", "contoso", "--all", "--code", ""},
		{"dead", "ls", "--code", ""},
	} {
		var out, errb bytes.Buffer
		if code := run(append([]string{"--nats-url", "nats://127.0.0.1:1"}, args...), &out, &errb); code != exitUsage {
			t.Errorf("%q: exit %d, want %d (stderr %q)", args, code, exitUsage, errb.String())
		}
		if lines := strings.Count(strings.TrimSpace(errb.String()), "\n"); lines != 0 {
			t.Errorf("%q: %d lines on stderr, want one: %q", args, lines+1, errb.String())
		}
		if out.Len() != 0 {
			t.Errorf("%q: stdout %q, want nothing", args, out.String())
		}
	}
	var out, errb bytes.Buffer
	if code := run([]string{"pause", ""}, &out, &errb); code != exitUsage || !strings.Contains(errb.String(), "TENANT is required") {
		t.Errorf("pause '': exit %d, stderr %q", code, errb.String())
	}
}

// Help and completion still work.
func TestHelpAndCompletion(t *testing.T) {
	t.Parallel()
	for _, args := range [][]string{{"help"}, {"help", "campaign", "run"}, {"--help"}, {"completion", "bash"}, {"completion", "zsh"}, {"completion", "--help"}} {
		var out, errb bytes.Buffer
		if code := run(args, &out, &errb); code != exitOK || out.Len() == 0 {
			t.Errorf("%q: exit %d, stdout %d bytes, stderr %q", args, code, out.Len(), errb.String())
		}
	}
}

// Help and completion read no connection setting: an empty NATS_URL or a
// bad prefix in the environment does not stop them (nor tab completion).
// t.Setenv: not parallel.
func TestHelpAndCompletionIgnoreConnectionSettings(t *testing.T) {
	t.Setenv("NATS_URL", "")
	t.Setenv("MDE_OFFBOARD_SUBJECT_PREFIX", "a b")
	for _, args := range [][]string{{"help"}, {"help", "status"}, {"completion", "bash"}, {"__complete", ""}} {
		var out, errb bytes.Buffer
		if code := run(args, &out, &errb); code != exitOK || out.Len() == 0 {
			t.Errorf("%q: exit %d, stdout %d bytes, stderr %q", args, code, out.Len(), errb.String())
		}
	}
}

// The help command completes the commands under those already typed.
func TestHelpCompletesTopics(t *testing.T) {
	t.Parallel()
	for args, want := range map[string]string{"help ": "campaign\t", "help campaign r": "run\t", "help dead ": "retry\t"} {
		var out, errb bytes.Buffer
		if code := run(append([]string{"__complete"}, strings.Split(args, " ")...), &out, &errb); code != exitOK || !strings.Contains(out.String(), want) {
			t.Errorf("complete %q: exit %d, stdout %q, want %q", args, code, out.String(), want)
		}
	}
	var out, errb bytes.Buffer
	if run([]string{"__complete", "help", "bogus", ""}, &out, &errb); strings.Contains(out.String(), "campaign") {
		t.Errorf("complete \"help bogus \": %q, want nothing after an unknown topic", out.String())
	}
}

// A NATS server without JetStream is said to be one, not "no responders".
func TestNATSWithoutJetStream(t *testing.T) {
	t.Parallel()
	url := natstest.StartWithoutJetStream(t, false)
	for _, args := range [][]string{{"status"}, {"pause", "contoso"}, {"dead", "ls"}} {
		var out, errb bytes.Buffer
		code := run(append([]string{"--nats-url", url}, args...), &out, &errb)
		if code != exitFailed || !strings.Contains(errb.String(), "has no JetStream") || strings.Count(strings.TrimSpace(errb.String()), "\n") != 0 {
			t.Errorf("%q: exit %d, stderr %q", args, code, errb.String())
		}
	}
}

// A NATS server with JetStream but without the worker's streams (no
// worker ever ran against it, or deploy/nats was not applied) is said to
// lack them, as the missing control bucket is, not only by the server's
// "stream not found".
func TestMissingStreamsSaySo(t *testing.T) {
	t.Parallel()
	url := natstest.Start(t, 1).URLs()
	for _, args := range [][]string{
		{"status"}, {"dead", "ls"}, {"dead", "retry", "--seq", "1", "contoso"},
		{"campaign", "status", "--tenant", "contoso", "--name", "x"},
		{"campaign", "cancel", "--tenant", "contoso", "--name", "x"},
		{"budget", "contoso", "5/1h"},
	} {
		var out, errb bytes.Buffer
		code := run(append([]string{"--nats-url", url}, args...), &out, &errb)
		if code != exitFailed || !strings.Contains(errb.String(), "start a worker, or apply deploy/nats") ||
			strings.Count(strings.TrimSpace(errb.String()), "\n") != 0 {
			t.Errorf("%q: exit %d, stderr %q", args, code, errb.String())
		}
	}
}

// The URL of a server that cannot be reached is named without its
// password, whether it has a scheme or not; one that is not a URL is bad
// usage, named without its password too (the URL parser's own error
// quotes it whole).
func TestUnreachableNATSNamedWithoutPassword(t *testing.T) {
	t.Parallel()
	for _, url := range []string{"nats://alice:hunter2@host:bad", "nats://alice:hunter2%zz@127.0.0.1:1", "nats://alice:hunter2@[::1"} {
		var out, errb bytes.Buffer
		code := run([]string{"--nats-url", url, "--connect-timeout", "1s", "status"}, &out, &errb)
		if code != exitUsage || strings.Contains(errb.String(), "hunter2") || !strings.Contains(errb.String(), "is not a URL") {
			t.Errorf("%s: exit %d, stderr %q", url, code, errb.String())
		}
	}
	// A port no server can have: the URL parses, and only the dial
	// failed, exit 1, as if a server were down.
	for _, url := range []string{"nats://alice:hunter2@host:99999", "host:0", "nats://127.0.0.1:2,nats://h:65536"} {
		var out, errb bytes.Buffer
		code := run([]string{"--nats-url", url, "--connect-timeout", "1s", "status"}, &out, &errb)
		if code != exitUsage || strings.Contains(errb.String(), "hunter2") || !strings.Contains(errb.String(), "want a port from 1 to 65535") {
			t.Errorf("%s: exit %d, stderr %q", url, code, errb.String())
		}
	}
	// A schemeless URL with a user after another cannot be told from a ',' in a password.
	for _, url := range []string{"nats://127.0.0.1:2, bob:hunter2@h:x", "nats://127.0.0.1:2,bob:hunter2@127.0.0.1:1"} {
		var out, errb bytes.Buffer
		code := run([]string{"--nats-url", url, "--connect-timeout", "1s", "status"}, &out, &errb)
		if code != exitUsage || strings.Contains(errb.String(), "hunter2") {
			t.Errorf("%s: exit %d, stderr %q", url, code, errb.String())
		}
	}
	for _, url := range []string{"alice:hunter2@127.0.0.1:1", "nats://alice:hunter2@127.0.0.1:1", "nats://127.0.0.1:2,nats://bob:hunter2@127.0.0.1:1"} {
		var out, errb bytes.Buffer
		code := run([]string{"--nats-url", url, "--connect-timeout", "1s", "status"}, &out, &errb)
		if code != exitFailed || strings.Contains(errb.String(), "hunter2") || !strings.Contains(errb.String(), "127.0.0.1:1") {
			t.Errorf("%s: exit %d, stderr %q", url, code, errb.String())
		}
	}
}

// offboardctl reads the worker's variables for the connection too:
// MDE_OFFBOARD_TLSCA as the worker does, a file that is not there being
// bad usage named by its setting. t.Setenv: not parallel.
func TestWorkersConnectionVariables(t *testing.T) {
	t.Setenv("MDE_OFFBOARD_TLSCA", "/nonexistent/worker-ca.pem")
	var out, errb bytes.Buffer
	if code := run([]string{"--nats-url", "nats://127.0.0.1:1", "status"}, &out, &errb); code != exitUsage || !strings.Contains(errb.String(), "--tlsca") {
		t.Errorf("exit %d, stderr %q: MDE_OFFBOARD_TLSCA not read", code, errb.String())
	}
}

func TestVersion(t *testing.T) {
	t.Parallel()
	var out, errb bytes.Buffer
	if code := run([]string{"--version"}, &out, &errb); code != exitOK || !strings.Contains(out.String(), "offboardctl version") {
		t.Errorf("--version: exit %d, stdout %q", code, out.String())
	}
	// An argument beside it is bad usage: before, the version was shown,
	// exit 0.
	for _, args := range [][]string{{"--version", "extra"}, {"extra", "--version"}, {"-v", "status2"}} {
		out.Reset()
		errb.Reset()
		code := run(args, &out, &errb)
		if code != exitUsage || out.Len() != 0 || strings.Count(strings.TrimSpace(errb.String()), "\n") != 0 || !strings.Contains(errb.String(), "--version") {
			t.Errorf("%q: exit %d, stdout %q, stderr %q: want 2, nothing shown, one line naming --version", args, code, out.String(), errb.String())
		}
	}
}

// An interrupt while NATS has not answered the connection ends the
// command at once, exit 1, not at the end of --connect-timeout: the
// server here takes the connection and never says a word.
func TestInterruptWhileConnecting(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var conns []net.Conn
	t.Cleanup(func() {
		_ = ln.Close()
		mu.Lock()
		defer mu.Unlock()
		for _, c := range conns {
			_ = c.Close()
		}
	})
	go func() {
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, conn)
			mu.Unlock()
		}
	}()
	ctx, interrupt := context.WithCancelCause(t.Context())
	time.AfterFunc(200*time.Millisecond, func() { interrupt(errors.New("interrupt signal received")) })
	start := time.Now()
	var out, errb bytes.Buffer
	code := runContext(ctx, []string{"--nats-url", "nats://alice:hunter2@" + ln.Addr().String(), "--connect-timeout", "1m", "status"}, &out, &errb)
	if took := time.Since(start); took > 20*time.Second {
		t.Errorf("the interrupt ended the command after %v", took)
	}
	if code != exitFailed || !strings.Contains(errb.String(), "interrupt") || strings.Contains(errb.String(), "hunter2") ||
		strings.Count(strings.TrimSpace(errb.String()), "\n") != 0 {
		t.Errorf("exit %d, stderr %q", code, errb.String())
	}
}

// dead retry given both --seq and --all says it takes one of them, not
// the "give --seq N or --all" of neither, which read as if the flags
// given had been missed.
func TestDeadRetrySeqAndAllTogether(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"dead", "retry", "contoso"}, "offboardctl: give --seq N or --all\n"},
		{[]string{"dead", "retry", "contoso", "--seq", "3", "--all"}, "offboardctl: give --seq N or --all, not both\n"},
	} {
		var out, errb bytes.Buffer
		if code := run(append([]string{"--nats-url", "nats://127.0.0.1:1"}, c.args...), &out, &errb); code != exitUsage || errb.String() != c.want {
			t.Errorf("%q: exit %d, stderr %q; want exit %d, %q", c.args, code, errb.String(), exitUsage, c.want)
		}
	}
}

// A wrong number of arguments is answered with the command's usage line,
// which names what it takes (TENANT), or shows that a campaign command
// takes flags only: "campaign run contoso x.csv" was told "takes 0
// argument(s), got 2", and "pause" "takes 1 argument(s)", naming none.
func TestArgumentCountShowsTheUsage(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"pause"}, "offboardctl: usage: offboardctl pause TENANT; got 0 arguments; see offboardctl pause --help\n"},
		{[]string{"resume", "contoso", "bulk"}, "offboardctl: usage: offboardctl resume TENANT; got 2 arguments; see offboardctl resume --help\n"},
		{[]string{"status", "contoso", "fabrikam"}, "offboardctl: usage: offboardctl status [TENANT]; got 2 arguments; see offboardctl status --help\n"},
		{[]string{"budget", "contoso", "5", "1h"}, "offboardctl: usage: offboardctl budget TENANT (COUNT/DURATION | --clear); got 3 arguments; see offboardctl budget --help\n"},
		{[]string{"dead", "retry"}, "offboardctl: usage: offboardctl dead retry TENANT (--seq N | --all); got 0 arguments; see offboardctl dead retry --help\n"},
		{[]string{"campaign", "run", "contoso", "wave.csv"}, "offboardctl: usage: offboardctl campaign run --tenant T --csv FILE; got 2 arguments; see offboardctl campaign run --help\n"},
		{[]string{"campaign", "status", "wave"}, "offboardctl: usage: offboardctl campaign status --tenant T --name NAME; got 1 argument; see offboardctl campaign status --help\n"},
	} {
		var out, errb bytes.Buffer
		if code := run(append([]string{"--nats-url", "nats://127.0.0.1:1"}, c.args...), &out, &errb); code != exitUsage || errb.String() != c.want {
			t.Errorf("%q: exit %d, stderr %q; want exit %d, %q", c.args, code, errb.String(), exitUsage, c.want)
		}
	}
}

// An empty MDE_OFFBOARD_NATS_URL hides NATS_URL (set is set), and the
// refusal said "--nats-url is empty" to an operator who gave no flag: it
// now names the variable. The same for the prefix. t.Setenv: not
// parallel.
func TestEmptyVariableIsNamed(t *testing.T) {
	t.Setenv("MDE_OFFBOARD_NATS_URL", "")
	t.Setenv("NATS_URL", "nats://127.0.0.1:1")
	var out, errb bytes.Buffer
	if code := run([]string{"status"}, &out, &errb); code != exitUsage || !strings.Contains(errb.String(), "--nats-url (from MDE_OFFBOARD_NATS_URL) is empty") {
		t.Errorf("exit %d, stderr %q: want %d naming MDE_OFFBOARD_NATS_URL", code, errb.String(), exitUsage)
	}
	t.Setenv("MDE_OFFBOARD_SUBJECT_PREFIX", "a b")
	errb.Reset()
	if code := run([]string{"--nats-url", "nats://127.0.0.1:1", "status"}, &out, &errb); code != exitUsage || !strings.Contains(errb.String(), "--subject-prefix (from MDE_OFFBOARD_SUBJECT_PREFIX): ") {
		t.Errorf("exit %d, stderr %q: want %d naming MDE_OFFBOARD_SUBJECT_PREFIX", code, errb.String(), exitUsage)
	}
	errb.Reset()
	if code := run([]string{"--nats-url", "", "status"}, &out, &errb); code != exitUsage || !strings.Contains(errb.String(), "offboardctl: --nats-url is empty") {
		t.Errorf("exit %d, stderr %q: the flag given empty named alone", code, errb.String())
	}
}
