package main

import (
	"context"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/contoso-secops/mde-offboard/internal/testwait"
)

// The notice that a cancel stopped the publishing, on standard error,
// stands on a line of its own when standard output is the terminal the
// progress bar is drawn on: it was written after the bar, on the bar's
// line, which stayed on the screen as one line of both.
func TestCancelNoticeDoesNotJoinTheProgressBar(t *testing.T) {
	t.Parallel()
	url, js := natsWithStreams(t)
	// The run sends one row and waits, its bar drawn, until the cancel.
	stallRequests(t, js)
	tty, shown, closed := openTerminal(t, 100)
	dir := t.TempDir()
	csvPath := writeFile(t, dir, "bar.csv", numberedCSV(20))
	ctx, interrupt := context.WithCancel(t.Context())
	defer interrupt()
	done := make(chan int, 1)
	go func() {
		done <- runContext(ctx, []string{"--nats-url", url, "campaign", "run", "--tenant", tenant, "--csv", csvPath,
			"--report", filepath.Join(dir, "r.csv"), "--max-pending", "1"}, tty, tty)
	}()
	waitUntil := func(what string, cond func() bool) {
		t.Helper()
		for deadline := time.Now().Add(30 * time.Second); !cond(); time.Sleep(10 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("not within 30s: %s; terminal %q", what, shown())
			}
		}
	}
	waitUntil("one row sent and the bar drawn", func() bool {
		return lastRequestSeq(t, js) >= 1 && strings.Contains(shown(), "(0/20)")
	})
	if code, out, errs := ctl(t, url, "campaign", "cancel", "--tenant", tenant, "--name", "bar"); code != exitOK {
		t.Fatalf("cancel: exit %d, stdout %q, stderr %q", code, out, errs)
	}
	const notice = "offboardctl: campaign bar was cancelled: publishing stopped"
	waitUntil("the notice of the cancel", func() bool { return strings.Contains(shown(), notice) })
	interrupt()
	testwait.For(t, done, time.Minute, "the interrupted run")
	closed()
	got := shown()
	before := got[:strings.Index(got, notice)]
	if line := before[strings.LastIndexAny(before, "\r\n")+1:]; strings.TrimSpace(line) != "" {
		t.Errorf("the notice of the cancel follows %q on its line; terminal %q", line, got)
	}
}
