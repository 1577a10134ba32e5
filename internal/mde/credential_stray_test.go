package mde

import (
	"strings"
	"testing"
)

// TestCredentialConfigCheckRefusesAnotherKindsFile: tokenFile belongs to
// workloadIdentity, certificatePasswordFile to certificateFile. Set with
// another way, each was ignored without a word: tokenFile beside
// managedIdentity (workloadIdentity meant, the wrong key set true)
// logged the tenant in with the host's managed identity, on AKS the
// node's kubelet identity, rather than the workload's.
func TestCredentialConfigCheckRefusesAnotherKindsFile(t *testing.T) {
	t.Parallel()
	for name, tc := range map[string]struct {
		cc   CredentialConfig
		want string
	}{
		"token file with managed identity": {CredentialConfig{ManagedIdentity: true, TokenFile: "/var/run/t"},
			"tokenFile is set without workloadIdentity: true"},
		"token file with a secret file": {CredentialConfig{ClientSecretFile: "/run/s", TokenFile: "/var/run/t"},
			"tokenFile is set without workloadIdentity: true"},
		"password file with a secret file": {CredentialConfig{ClientSecretFile: "/run/s", CertificatePasswordFile: "/run/p"},
			"certificatePasswordFile is set without certificateFile"},
		"password file with workload identity": {CredentialConfig{WorkloadIdentity: true, CertificatePasswordFile: "/run/p"},
			"certificatePasswordFile is set without certificateFile"},
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			tc.cc.TenantID, tc.cc.ClientID = simTenantID, simClientID
			if err := tc.cc.Check(); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("Check() = %v, want an error holding %q", err, tc.want)
			}
			if err := tc.cc.Check(); err != nil && strings.Contains(err.Error(), "/run") {
				t.Errorf("Check() = %q shows a path", err)
			}
		})
	}
}
