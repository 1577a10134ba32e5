package buildinfo_test

import (
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// A build that sets the version and revision at link time, as the
// container image's does (it has no .git to read them from), reports
// them: --version, and so the build_info metric.
func TestVersionSetAtLinkTime(t *testing.T) {
	t.Parallel()
	bin := filepath.Join(t.TempDir(), "worker")
	const pkg = "github.com/contoso-secops/mde-offboard/internal/buildinfo"
	build := exec.Command("go", "build", "-buildvcs=false", "-o", bin,
		"-ldflags", "-X "+pkg+".version=v9.8.7 -X "+pkg+".revision=0123456789abcdef0123", "../../cmd/worker")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	out, err := exec.Command(bin, "--version").CombinedOutput()
	if err != nil {
		t.Fatalf("worker --version: %v\n%s", err, out)
	}
	if got := strings.TrimSpace(string(out)); got != "worker v9.8.7 (0123456789ab)" {
		t.Errorf("worker --version printed %q", got)
	}
}
