package main

import (
	"io"
	"os"
	"os/signal"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// TestRunSIGTERMWhileReadingTheConfiguration: a SIGTERM that comes while
// the worker still reads its tenants file and builds the tenants'
// clients (a pod deleted as it starts; at 1000 tenants this takes a
// tenth of a second) stops it, exit 0.
// Before, the signals were caught only after that: the signal killed the
// process, exit status 143.
func TestRunSIGTERMWhileReadingTheConfiguration(t *testing.T) {
	// Caught here too, so a worker that does not catch it yet fails the
	// test instead of killing the test binary.
	guard := make(chan os.Signal, 1)
	signal.Notify(guard, syscall.SIGTERM)
	defer signal.Stop(guard)
	// A variable that sets no flag is warned of once the tenants file
	// is read, before the tenants' clients are built: the signal comes
	// then.
	t.Setenv("MDE_OFFBOARD_SHUTDOWN_TIMOUT", "1m")
	stderr := &signalAt{text: "sets no flag", send: func() {
		if err := syscall.Kill(os.Getpid(), syscall.SIGTERM); err != nil {
			t.Error(err)
		}
		<-guard // delivered
	}}
	exit := make(chan int, 1)
	args := []string{"--config", tenantsFile(t), "--data-dir", t.TempDir(), "--embedded-listen", freePort(t),
		"--listen", freePort(t), "--log-format", "console"}
	go func() { exit <- run(args, io.Discard, stderr) }()
	select {
	case code := <-exit:
		if code != 0 {
			t.Fatalf("exit code %d after SIGTERM while reading the configuration, want 0:\n%s", code, stderr.String())
		}
	case <-time.After(10 * time.Second):
		// Started regardless: stop it, as the signal should have.
		_ = sigterm(t, exit, 30*time.Second)
		t.Fatalf("SIGTERM while reading the configuration was not taken: still running after 10s:\n%s", stderr.String())
	}
	if out := stderr.String(); !strings.Contains(out, "stopped before the start was over") {
		t.Errorf("no word of the stop:\n%s", out)
	}
}

// signalAt is a log that calls send at the first line holding text,
// before it takes the line.
type signalAt struct {
	lockedBuffer
	text string
	send func()
	once sync.Once
}

func (s *signalAt) Write(p []byte) (int, error) {
	if strings.Contains(string(p), s.text) {
		s.once.Do(s.send)
	}
	return s.lockedBuffer.Write(p)
}
