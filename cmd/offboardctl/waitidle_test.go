//go:build unix

package main

import (
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestCampaignRunWaitsWithoutSpinning: a run whose rows are all published
// waits for their results (here none comes: no worker) without taking a
// core. Its wait loop found the end of publishing ready at every turn and
// never slept: a run waiting 2 s took about 2 s of CPU. Not parallel: it
// reads the CPU time of the whole test process.
func TestCampaignRunWaitsWithoutSpinning(t *testing.T) {
	url, _ := natsWithStreams(t)
	dir := t.TempDir()
	csvPath := writeFile(t, dir, "idle.csv", "machineId\n"+strings.Repeat("a", 40)+"\n")
	var before, after syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &before); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	code, _, errs := ctl(t, url, "campaign", "run", "--tenant", "contoso", "--csv", csvPath,
		"--report", filepath.Join(dir, "idle-report.csv"), "--timeout", "2s", "--progress-every", "1h")
	waited := time.Since(start)
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &after); err != nil {
		t.Fatal(err)
	}
	if waited < 2*time.Second {
		t.Fatalf("the run ended after %v, before its --timeout of 2s: exit %d: %s", waited, code, errs)
	}
	cpu := time.Duration(after.Utime.Nano() + after.Stime.Nano() - before.Utime.Nano() - before.Stime.Nano())
	t.Logf("a run waiting %v took %v of CPU", waited.Round(time.Millisecond), cpu.Round(time.Millisecond))
	if cpu > waited/3 {
		t.Errorf("a run waiting %v for results took %v of CPU", waited.Round(time.Millisecond), cpu.Round(time.Millisecond))
	}
}
