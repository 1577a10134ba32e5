package main

import (
	"bytes"
	"context"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/creack/pty"

	"github.com/contoso-secops/mde-offboard/internal/testwait"
	"github.com/contoso-secops/mde-offboard/offboard"
)

// The notice that a cancel stopped the publishing, on standard error,
// stands on a line of its own when standard output is the terminal the
// progress bar is drawn on: it was written after the bar, on the bar's
// line, which stayed on the screen as one line of both.
func TestCancelNoticeDoesNotJoinTheProgressBar(t *testing.T) {
	t.Parallel()
	url, js := natsWithStreams(t)
	// The stream stores the rows but does not acknowledge them: the run
	// sends one row and waits, its bar drawn, until the cancel.
	s, err := js.Stream(t.Context(), offboard.StreamRequests)
	if err != nil {
		t.Fatal(err)
	}
	cfg := s.CachedInfo().Config
	cfg.NoAck = true
	if _, err := js.UpdateStream(t.Context(), cfg); err != nil {
		t.Fatal(err)
	}
	ptmx, tty, err := pty.Open()
	if err != nil {
		t.Skipf("no pseudo-terminal: %v", err)
	}
	defer func() { _ = ptmx.Close() }()
	if err := pty.Setsize(ptmx, &pty.Winsize{Rows: 24, Cols: 100}); err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var screen bytes.Buffer
	shown := func() string { mu.Lock(); defer mu.Unlock(); return screen.String() }
	var wg sync.WaitGroup
	wg.Go(func() {
		buf := make([]byte, 4096)
		for {
			n, err := ptmx.Read(buf)
			mu.Lock()
			screen.Write(buf[:n])
			mu.Unlock()
			if err != nil {
				return
			}
		}
	})
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
	_ = tty.Close()
	wg.Wait()
	got := shown()
	before := got[:strings.Index(got, notice)]
	if line := before[strings.LastIndexAny(before, "\r\n")+1:]; strings.TrimSpace(line) != "" {
		t.Errorf("the notice of the cancel follows %q on its line; terminal %q", line, got)
	}
}
