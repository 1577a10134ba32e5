//go:build unix

package main

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// childArgs, in the environment, has TestOffboardctlChild run
// offboardctl with these arguments (separated by unit separators, U+001F) as a process
// of its own, which a test can send signals to; childNohup has it start
// with hangups ignored, as nohup starts a command.
const (
	childArgs  = "OFFBOARDCTL_TEST_CHILD_ARGS"
	childNohup = "OFFBOARDCTL_TEST_CHILD_NOHUP"
)

// TestOffboardctlChild is offboardctl's main in a process of its own,
// started by the tests below; on its own it does nothing.
func TestOffboardctlChild(t *testing.T) {
	args := os.Getenv(childArgs)
	if args == "" {
		t.Skip("run by the tests that send offboardctl signals")
	}
	if os.Getenv(childNohup) != "" {
		signal.Ignore(syscall.SIGHUP)
	} else {
		// The tests run under nohup (a suite left running after its
		// session) start it with hangups ignored, which offboardctl
		// keeps: a handler of its own undoes that, as a terminal's
		// session would start it.
		signal.Notify(make(chan os.Signal, 1), syscall.SIGHUP)
	}
	os.Exit(run(strings.Split(args, "\x1f"), os.Stdout, os.Stderr))
}

// A hangup (the terminal or the SSH session closed under a campaign run
// of hours) ends the run as Ctrl-C does: the report is written and the
// run's copies of the CSV and of its results are removed. Before, the
// hangup killed it, with no report and both copies left behind. Started
// with hangups ignored (nohup), it goes on.
func TestHangupEndsACampaignRunAsAnInterrupt(t *testing.T) {
	t.Parallel()
	url, js := natsWithStreams(t)
	dir := t.TempDir()
	csv := writeFile(t, dir, "wave.csv", "machineId\n"+strings.Repeat("a", 40)+"\n"+strings.Repeat("b", 40)+"\n")
	// start runs the campaign name in a process of its own, with its
	// temporary files in a directory of their own, and returns once both
	// rows are published (no worker answers them).
	start := func(name string, nohup bool) (*exec.Cmd, *bytes.Buffer, *bytes.Buffer, string) {
		t.Helper()
		tmp := t.TempDir()
		cmd := exec.Command(os.Args[0], "-test.run=^TestOffboardctlChild$")
		cmd.Env = append(os.Environ(), "TMPDIR="+tmp, childArgs+"="+strings.Join([]string{"--nats-url", url,
			"campaign", "run", "--tenant", "contoso", "--name", name, "--csv", csv, "--report", filepath.Join(dir, name+"-report.csv")}, "\x1f"))
		if nohup {
			cmd.Env = append(cmd.Env, childNohup+"=1")
		}
		var out, errb bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &errb
		startPublishing(t, js, cmd, 2, &errb)
		return cmd, &out, &errb, tmp
	}
	ended := func(name string, cmd *exec.Cmd, out, errb *bytes.Buffer, tmp, cause string) {
		t.Helper()
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()
		var err error
		select {
		case err = <-done:
		case <-time.After(time.Minute):
			// Its goroutines, for what it waits for.
			_ = cmd.Process.Signal(syscall.SIGQUIT)
			select {
			case <-done:
			case <-time.After(10 * time.Second):
			}
			t.Fatalf("%s: the run did not end; stdout %q, stderr:\n%s", name, out.String(), errb.String())
		}
		var exit *exec.ExitError
		if !errors.As(err, &exit) || exit.ExitCode() != exitFailed ||
			!strings.Contains(errb.String(), "2 rows without a result ("+cause+")") || !strings.Contains(out.String(), "report") {
			t.Errorf("%s: %v, stdout %q, stderr %q; want exit %d, the rows without a result (%s)", name, err, out.String(), errb.String(), exitFailed, cause)
		}
		if _, err := os.Stat(filepath.Join(dir, name+"-report.csv")); err != nil {
			t.Errorf("%s: no report: %v", name, err)
		}
		if left, _ := os.ReadDir(tmp); len(left) != 0 {
			t.Errorf("%s: left in the temporary directory: %v", name, left)
		}
	}

	cmd, out, errb, tmp := start("hangup", false)
	if err := cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	ended("hangup", cmd, out, errb, tmp, "hangup signal received")

	// Under nohup the hangup is ignored: the interrupt after it ends the
	// run. Both pending at once, the hangup would come first.
	cmd, out, errb, tmp = start("nohup", true)
	if err := cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	if err := cmd.Process.Signal(os.Interrupt); err != nil {
		t.Fatal(err)
	}
	ended("nohup", cmd, out, errb, tmp, "interrupt signal received")
}

// startPublishing starts cmd, a campaign run in a process of its own
// (killed when the test ends), and returns once it has published rows
// requests; errb is its standard error, shown if it does not.
func startPublishing(t *testing.T, js jetstream.JetStream, cmd *exec.Cmd, rows uint64, errb *bytes.Buffer) {
	t.Helper()
	published := lastRequestSeq(t, js)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill() })
	for deadline := time.Now().Add(time.Minute); lastRequestSeq(t, js) < published+rows; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("the rows were not published in a minute: %s", errb.String())
		}
	}
}
