//go:build unix

package app

import (
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/contoso-secops/mde-offboard/internal/config"
	"github.com/contoso-secops/mde-offboard/internal/mde"
)

// TestCAFileReadAsACredentialFile: a tenant's caFile is read as the
// credential files are. A FIFO or a device named by mistake neither
// blocks the start nor is read for ever, a file too large is refused,
// and no error shows the value: a secret pasted as caFile's value, in
// place of clientSecretFile's, would be shown.
func TestCAFileReadAsACredentialFile(t *testing.T) {
	dir := t.TempDir()
	fifo := filepath.Join(dir, "fifo")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Skipf("no FIFO here: %v", err)
	}
	large := filepath.Join(dir, "large.pem")
	if err := os.WriteFile(large, make([]byte, maxCAFile+1), 0o600); err != nil {
		t.Fatal(err)
	}
	const pasted = "Zx9~SECRET.pasted-as-caFile"
	for _, tc := range []struct{ name, caFile, want string }{
		{"missing", filepath.Join(dir, pasted), "caFile: the file it names could not be read: no such file or directory"},
		{"pasted secret", pasted, "caFile: the file it names could not be read"},
		{"FIFO", fifo, "caFile: the file it names is not a regular file"},
		{"device", os.DevNull, "caFile: the file it names is not a regular file"},
		{"directory", dir, "caFile: the file it names is not a regular file"},
		{"too large", large, "caFile: the file it names is larger than"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			done := make(chan error, 1)
			go func() {
				_, err := transports([]*config.Tenant{{Name: "contoso", CAFile: tc.caFile}}, -1, mde.DefaultTimeout)
				done <- err
			}()
			var err error
			select {
			case err = <-done:
			case <-time.After(10 * time.Second):
				t.Fatal("reading caFile did not return within 10s")
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want one with %q", err, tc.want)
			}
			if strings.Contains(err.Error(), "SECRET") || strings.Contains(err.Error(), dir) {
				t.Errorf("error %q shows the value of caFile", err)
			}
		})
	}
}
