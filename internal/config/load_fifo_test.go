//go:build unix

package config

import (
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// A FIFO named as the tenants file is refused at once: opening it to
// read would wait for a writer.
func TestLoadRefusesAFIFO(t *testing.T) {
	t.Parallel()
	fifo := filepath.Join(t.TempDir(), "worker.yaml")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() {
		_, err := Load(fifo)
		done <- err
	}()
	var err error
	select {
	case err = <-done:
	case <-time.After(5 * time.Second):
		t.Errorf("Load of a FIFO still waiting after 5s")
		if w, werr := os.OpenFile(fifo, os.O_WRONLY, 0); werr == nil {
			_ = w.Close()
		}
		err = <-done
	}
	if err == nil || !strings.Contains(err.Error(), "not a regular file") {
		t.Errorf("Load of a FIFO: %v, want not a regular file", err)
	}
}
