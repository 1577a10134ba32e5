package mde

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	pkcs12 "software.sslmate.com/src/go-pkcs12"
)

// A PKCS#12 file is read whatever algorithms it was exported with:
// AES-256 and SHA-256, as OpenSSL 3 and today's Windows export by
// default, as well as the SHA-1 with 3DES or RC2 of older exports. The
// identity library reads the older ones alone, and the newer failed as
// "wrong format or password".
func TestCertificatePKCS12OfEveryExport(t *testing.T) {
	t.Parallel()
	for name, enc := range map[string]*pkcs12.Encoder{
		"AES-256 and SHA-256": pkcs12.Modern2023,
		"SHA-1 and 3DES":      pkcs12.LegacyDES,
		"SHA-1 and RC2":       pkcs12.LegacyRC2,
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			f := setupCertLogin(t)
			data, err := os.ReadFile(f.certFile)
			if err != nil {
				t.Fatal(err)
			}
			const password = "pfx-pässword"
			replaceFile(t, f.certFile, pkcs12With(t, enc, data, password))
			f.cc.CertificatePasswordFile = filepath.Join(t.TempDir(), "password")
			if err := os.WriteFile(f.cc.CertificatePasswordFile, []byte(password+"\n"), 0o600); err != nil {
				t.Fatal(err)
			}
			cred, err := NewCredential(f.cc, f.cloud, f.hc)
			if err != nil {
				t.Fatalf("NewCredential: %v", err)
			}
			if _, err := f.getToken(cred); err != nil {
				t.Fatalf("GetToken: %v", err)
			}

			// The wrong password still says so, and shows neither.
			if err := os.WriteFile(f.cc.CertificatePasswordFile, []byte("wrong-password\n"), 0o600); err != nil {
				t.Fatal(err)
			}
			_, err = NewCredential(f.cc, f.cloud, f.hc)
			if err == nil || !strings.Contains(err.Error(), "certificateFile") {
				t.Fatalf("a wrong password: %v; want an error naming certificateFile", err)
			}
			checkNoSecret(t, err, password, "wrong-password")
		})
	}
}

// A PEM certificate with a password file set (the password of nothing:
// the PEM key is not encrypted) is read as the PEM it is: with a
// password, the identity library tried PKCS#12 alone.
func TestPEMCertificateWithAPasswordFile(t *testing.T) {
	t.Parallel()
	f := setupCertLogin(t)
	f.cc.CertificatePasswordFile = filepath.Join(t.TempDir(), "password")
	if err := os.WriteFile(f.cc.CertificatePasswordFile, []byte("unused\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cred, err := NewCredential(f.cc, f.cloud, f.hc)
	if err != nil {
		t.Fatalf("NewCredential: %v", err)
	}
	if _, err := f.getToken(cred); err != nil {
		t.Fatalf("GetToken: %v", err)
	}
}
