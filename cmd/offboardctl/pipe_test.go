//go:build unix

package main

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// A campaign run whose standard output nobody reads any more (piped to
// tee, which the same Ctrl-C ended first; to less, quit) still writes
// its report, removes its copies of the CSV and of its results, and says
// on standard error what to do next. Before, its summary's write to the
// closed pipe killed it with SIGPIPE between the report and the clean-up:
// both copies stayed in the temporary directory, and nothing was said.
func TestCampaignRunOutlivesItsOutputsReader(t *testing.T) {
	t.Parallel()
	url, js := natsWithStreams(t)
	dir, tmp := t.TempDir(), t.TempDir()
	csv := writeFile(t, dir, "wave.csv", "machineId\n"+strings.Repeat("a", 40)+"\n"+strings.Repeat("b", 40)+"\n")
	report := filepath.Join(dir, "wave-report.csv")
	cmd := exec.Command(os.Args[0], "-test.run=^TestOffboardctlChild$")
	cmd.Env = append(os.Environ(), "TMPDIR="+tmp, childArgs+"="+strings.Join([]string{"--nats-url", url,
		"campaign", "run", "--tenant", "contoso", "--csv", csv, "--report", report}, "\x1f"))
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var errb bytes.Buffer
	cmd.Stderr = &errb
	startPublishing(t, js, cmd, 2, &errb)
	// The reader goes, then the interrupt comes.
	if err := stdout.Close(); err != nil {
		t.Fatal(err)
	}
	if err := cmd.Process.Signal(os.Interrupt); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err = <-done:
	case <-time.After(time.Minute):
		t.Fatal("the run did not end")
	}
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.ExitCode() != exitFailed || !strings.Contains(errb.String(), "run the same command again") {
		t.Errorf("%v, stderr %q; want exit %d, saying to run the same command again", err, errb.String(), exitFailed)
	}
	if _, err := os.Stat(report); err != nil {
		t.Errorf("no report: %v", err)
	}
	if left, _ := os.ReadDir(tmp); len(left) != 0 {
		t.Errorf("left in the temporary directory: %v", left)
	}
}
