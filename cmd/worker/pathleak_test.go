package main

import (
	"bytes"
	"io"
	"strings"
	"sync"
	"testing"
	"time"
)

// A NATS URL given where a path belongs (to --config or --data-dir, or
// mapped to their variables) is refused naming the flag, at start and by
// --check-config: the tenants file's open error quoted it whole, twice,
// and the embedded server's start line logged it as its storage.
func TestPathSettingsShowNoURL(t *testing.T) {
	const url = "nats://alice:S3CR3T@127.0.0.1:1"
	checkShowsNoValue(t, []settingCase{{[]string{"--config", url}, "--config"}})
	cfg := tenantsFile(t)
	for _, check := range []bool{true, false} {
		args := []string{"--config", cfg, "--data-dir", url, "--listen", "127.0.0.1:0", "--embedded-listen", "127.0.0.1:0"}
		if check {
			args = append(args, "--check-config")
		}
		var mu sync.Mutex
		var out bytes.Buffer
		done := make(chan int, 1)
		go func() { done <- run(args, io.Discard, &lockedWriter{&mu, &out}) }()
		select {
		case code := <-done:
			mu.Lock()
			msg := out.String()
			mu.Unlock()
			if code != 2 || strings.Contains(msg, "S3CR3T") || strings.Contains(msg, "alice") || !strings.Contains(msg, "--data-dir") {
				t.Errorf("check %v: exit %d, stderr %q; want 2, naming --data-dir and not the value", check, code, msg)
			}
		case <-time.After(10 * time.Second):
			mu.Lock()
			t.Errorf("check %v: still running after 10s: the URL was taken as the storage; stderr %q", check, out.String())
			mu.Unlock()
		}
	}
}

// lockedWriter is a writer shared by a running worker and the test.
type lockedWriter struct {
	mu *sync.Mutex
	w  io.Writer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}
