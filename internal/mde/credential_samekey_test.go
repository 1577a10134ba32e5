package mde

import (
	"encoding/pem"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// TestCertificateFileWithTwoCertificatesOfItsKey: a certificate file that
// holds, beside the certificate the application knows, an expired one of
// the same key (a renewal that kept the key, appended to the file) signs
// with the valid one, whichever comes first. Before, the check took the
// first certificate of the key, and the identity library signs for the
// last: expired first, the start was refused as expired; valid first,
// the check passed, and every token request sent the expired one's
// thumbprint, refused by the login host.
func TestCertificateFileWithTwoCertificatesOfItsKey(t *testing.T) {
	t.Parallel()
	f := setupCertLogin(t)
	data, err := os.ReadFile(f.certFile)
	if err != nil {
		t.Fatal(err)
	}
	valid, key := pem.Decode(data) // the certificate, then its key
	_, old := certificateFor(t, f.key, time.Now().Add(-48*time.Hour), time.Now().Add(-time.Hour))
	expired, _ := pem.Decode(old)
	failed := 0
	for _, tc := range []struct {
		name          string
		first, second *pem.Block
	}{
		{"expired first", expired, valid},
		{"valid first", valid, expired},
	} {
		path := filepath.Join(t.TempDir(), "cert.pem")
		file := append(append(pem.EncodeToMemory(tc.first), pem.EncodeToMemory(tc.second)...), key...)
		if err := os.WriteFile(path, file, 0o600); err != nil {
			t.Fatal(err)
		}
		cc := f.cc
		cc.CertificateFile = path
		if err := cc.CheckFiles(time.Now()); err != nil {
			t.Errorf("%s: CheckFiles: %v", tc.name, err)
		}
		cred, err := NewCredential(cc, f.cloud, f.hc)
		if err != nil {
			t.Errorf("%s: NewCredential: %v", tc.name, err)
			failed++
			continue
		}
		if _, err := f.getToken(cred); err != nil {
			t.Errorf("%s: GetToken: %v", tc.name, err)
			failed++
		}
		if notAfter, _ := cred.CertificateExpiry(); notAfter.Before(time.Now()) {
			t.Errorf("%s: CertificateExpiry %s, the expired certificate's", tc.name, notAfter)
		}
	}
	if failed > 0 {
		t.Errorf("%d of 2 files with the valid certificate gave no token", failed)
	}
}
