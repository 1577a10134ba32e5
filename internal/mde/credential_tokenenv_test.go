package mde

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestTokenFileFromEnvironmentNamedSo: a workload identity without
// tokenFile reads the file AZURE_FEDERATED_TOKEN_FILE names. One that
// cannot be used fails the start and --check-config naming that
// variable, the setting that named the file, not tokenFile, which the
// tenants file does not set: told to fix tokenFile, an operator looked
// for a setting that is not there. Never the path or what the file
// holds. t.Setenv: not parallel.
func TestTokenFileFromEnvironmentNamedSo(t *testing.T) {
	dir := t.TempDir()
	notJWT := filepath.Join(dir, "namespace")
	if err := os.WriteFile(notJWT, []byte("default\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for name, tc := range map[string]struct{ path, want string }{
		"missing": {filepath.Join(dir, "missing"), "AZURE_FEDERATED_TOKEN_FILE: the file it names could not be read"},
		"not JWT": {notJWT, "AZURE_FEDERATED_TOKEN_FILE: the file it names holds no token"},
	} {
		t.Run(name, func(t *testing.T) {
			t.Setenv("AZURE_FEDERATED_TOKEN_FILE", tc.path)
			cc := CredentialConfig{TenantID: simTenantID, ClientID: simClientID, WorkloadIdentity: true}
			_, err := NewCredential(cc, Clouds["commercial"], nil)
			for what, err := range map[string]error{"NewCredential": err, "CheckFiles": cc.CheckFiles(time.Now())} {
				if err == nil || !strings.Contains(err.Error(), tc.want) || strings.Contains(err.Error(), "tokenFile") {
					t.Errorf("%s: err = %v, want one holding %q, not naming tokenFile", what, err, tc.want)
				}
				checkNoSecret(t, err, dir, "default")
			}
		})
	}
}
