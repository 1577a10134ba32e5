package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestSecretVariableIsNoMisspeltFlag: a tenant's clientSecretEnv may be
// named with the MDE_OFFBOARD_ prefix: it sets no flag, but it is not
// misspelt, and is not warned of as one, by --check-config nor at start.
// Before, every start told the operator the secret's variable was
// misspelt. A variable that is misspelt is still warned of.
func TestSecretVariableIsNoMisspeltFlag(t *testing.T) {
	t.Setenv("MDE_OFFBOARD_CONTOSO_CLIENT_SECRET", "s3cret-value")
	t.Setenv("MDE_OFFBOARD_SHUTDOWN_TIMOUT", "1m")
	path := filepath.Join(t.TempDir(), "worker.yaml")
	if err := os.WriteFile(path, []byte("tenants:\n  - name: contoso\n    tenantId: 11111111-2222-3333-4444-555555555555\n"+
		"    clientId: 66666666-7777-8888-9999-000000000000\n    clientSecretEnv: MDE_OFFBOARD_CONTOSO_CLIENT_SECRET\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	var stdout, stderr bytes.Buffer
	if code := run([]string{"--check-config", "--config", path}, &stdout, &stderr); code != 0 {
		t.Fatalf("--check-config: exit %d, stderr %q", code, stderr.String())
	}
	if out := stderr.String(); strings.Contains(out, "MDE_OFFBOARD_CONTOSO_CLIENT_SECRET") || !strings.Contains(out, "MDE_OFFBOARD_SHUTDOWN_TIMOUT sets no flag") {
		t.Errorf("--check-config stderr %q: want the misspelt variable alone warned of", out)
	}

	// At start: the warnings come before the tenants file's error.
	stderr.Reset()
	if code := run([]string{"--config", path, "--listen", "127.0.0.1:0", "--tlscert", "x"}, &stdout, &stderr); code != 2 {
		t.Fatalf("start with a bad flag: exit %d, want 2; stderr %q", code, stderr.String())
	}
	if out := stderr.String(); strings.Contains(out, "MDE_OFFBOARD_CONTOSO_CLIENT_SECRET") || !strings.Contains(out, "MDE_OFFBOARD_SHUTDOWN_TIMOUT") {
		t.Errorf("start stderr %q: want the misspelt variable alone warned of", out)
	}
}
