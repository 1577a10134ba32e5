package mde

import (
	"os"
	"strings"
	"testing"
)

// TestClientSecretFileOfSeveralLines: a secret file of several lines of
// text (the secret with its id or a note beside it, a .env file) is
// refused as such, not as "binary data, a PKCS#12 certificate or a key",
// which sent the operator looking for a certificate that was never there.
func TestClientSecretFileOfSeveralLines(t *testing.T) {
	t.Parallel()
	for _, content := range []string{
		"AZURE_CLIENT_ID=66666666-7777-8888-9999-000000000000\nAZURE_CLIENT_SECRET=Abc8Q~0123456789\n",
		"Abc8Q~0123456789\r\nexpires 2027-01-31\r\n",
		"value:\tAbc8Q~0123456789\nsecret id:\t0a1b2c3d\n",
	} {
		f := setupLogin(t, "right-secret-0301", "right-secret-0301")
		if err := os.WriteFile(f.secretFile, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		_, err := NewCredential(f.cc, f.cloud, f.hc)
		if err == nil || !strings.Contains(err.Error(), "clientSecretFile: the file it names holds several lines") ||
			strings.Contains(err.Error(), "binary") || strings.Contains(err.Error(), "PKCS#12") {
			t.Errorf("NewCredential: err = %v, want one saying clientSecretFile holds several lines", err)
		}
		checkNoSecret(t, err, "Abc8Q")
		if n := f.sim.TokenRequests(simTenantID); n != 0 {
			t.Errorf("the login host got %d token requests, want 0", n)
		}
	}
}
