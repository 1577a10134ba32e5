package mde

import (
	"strings"
	"testing"
)

// A tenant with no credential set is told so in words: the count and
// the list of the ones set read "(got 0: )".
func TestCredentialConfigCheckOfNoneSaysNoneIsSet(t *testing.T) {
	t.Parallel()
	for _, cc := range []CredentialConfig{
		{TenantID: "11111111-2222-3333-4444-555555555555", ClientID: "66666666-7777-8888-9999-000000000000"},
		{CertificatePasswordFile: "/run/secrets/p"},
		{TokenFile: "/var/run/t"},
	} {
		err := cc.Check()
		const want = "set exactly one of clientSecretFile, clientSecretEnv, certificateFile, workloadIdentity, managedIdentity (none is set)"
		if err == nil || err.Error() != want {
			t.Errorf("Check() of %+v = %v, want %q", cc, err, want)
		}
		if err != nil && strings.Contains(err.Error(), ": )") {
			t.Errorf("Check() of %+v = %q: an empty list", cc, err)
		}
	}
}
