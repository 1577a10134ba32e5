package mde

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	pkcs12 "software.sslmate.com/src/go-pkcs12"
)

// TestCertificatePKCS12PasswordNamed: a PKCS#12 file whose password is
// missing or wrong was told as "no certificate and private key could be
// read (wrong format or password)", the same words as a file of another
// format, with certificatePasswordFile unnamed. The error now names the
// password file: to be set when there is none, to be checked when its
// password is refused; neither password is shown.
func TestCertificatePKCS12PasswordNamed(t *testing.T) {
	t.Parallel()
	f := setupCertLogin(t)
	data, err := os.ReadFile(f.certFile)
	if err != nil {
		t.Fatal(err)
	}
	const password = "pfx-password-0401"
	replaceFile(t, f.certFile, pkcs12With(t, pkcs12.Modern2023, data, password))

	_, err = NewCredential(f.cc, f.cloud, f.hc)
	if err == nil || !strings.Contains(err.Error(), "certificateFile: the PKCS#12 file needs its password: set certificatePasswordFile") {
		t.Errorf("no password file: %v; want one saying to set certificatePasswordFile", err)
	}

	f.cc.CertificatePasswordFile = filepath.Join(t.TempDir(), "password")
	if err := os.WriteFile(f.cc.CertificatePasswordFile, []byte("wrong-password-0401\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err = NewCredential(f.cc, f.cloud, f.hc)
	if err == nil || !strings.Contains(err.Error(), "certificateFile: the password certificatePasswordFile holds does not open the PKCS#12 file") {
		t.Errorf("a wrong password: %v; want one saying certificatePasswordFile's password does not open the file", err)
	}
	checkNoSecret(t, err, password, "wrong-password-0401")
	if n := f.sim.TokenRequests(simTenantID); n != 0 {
		t.Errorf("the login host got %d token requests, want 0", n)
	}
}
