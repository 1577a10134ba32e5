//go:build linux

package queue

import (
	"errors"
	"os"
	"path/filepath"
	"syscall"
	"testing"
)

// TestCheckLeavesAPipeToTheClient: a file flag may name a named pipe a
// one-shot writer feeds (a secret fetched at start). Check must not open
// it: a writer waiting for its reader took the check's open for the
// client library's, wrote into a pipe the check closed unread, and left;
// the library's open then waited for a writer for ever. The kernel's
// notice of each open of the pipe (inotify) tells whether Check opened it.
func TestCheckLeavesAPipeToTheClient(t *testing.T) {
	t.Parallel()
	fifo := filepath.Join(t.TempDir(), "ca.pem")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	fd, err := syscall.InotifyInit1(syscall.IN_NONBLOCK | syscall.IN_CLOEXEC)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = syscall.Close(fd) })
	if _, err := syscall.InotifyAddWatch(fd, fifo, syscall.IN_OPEN); err != nil {
		t.Fatal(err)
	}
	opened := func() bool {
		buf := make([]byte, 4096)
		n, err := syscall.Read(fd, buf)
		if err != nil && !errors.Is(err, syscall.EAGAIN) {
			t.Fatal(err)
		}
		return n > 0
	}
	if err := (Conn{URL: "nats://127.0.0.1:4222", TLSCA: fifo, Creds: fifo}).Check(); err != nil {
		t.Fatalf("Check = %v, want none", err)
	}
	if opened() {
		t.Fatal("Check opened the pipe: a writer waiting for the client library's open would have written to it instead")
	}
	// The watch sees an open: the one the client library makes.
	f, err := os.OpenFile(fifo, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		t.Fatal(err)
	}
	_ = f.Close()
	if !opened() {
		t.Fatal("the watch saw no open of the pipe")
	}
}
