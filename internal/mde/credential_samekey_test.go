package mde

import (
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/contoso-secops/mde-offboard/internal/mde/mdesim"
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

// TestCertificateFileWithAnExpiredCertificateAndItsRenewalNotValidYet: a
// file that keeps, after the certificate that expired, its renewal with
// the same key that starts later, is a certificate not valid yet: the
// error says so, with the renewal's dates, and the file is read again at
// its start, as a single certificate not valid yet is. The first
// certificate of the key was taken when none was valid: the expired one,
// refused as expired, and never read again until the file changed, the
// renewal's start passed or not.
func TestCertificateFileWithAnExpiredCertificateAndItsRenewalNotValidYet(t *testing.T) {
	t.Parallel()
	f := setupCertLogin(t)
	cred := f.newCredential(t)
	if _, err := f.getToken(cred); err != nil {
		t.Fatalf("GetToken: %v", err)
	}
	_, old := certificateFor(t, f.key, time.Now().Add(-48*time.Hour), time.Now().Add(time.Hour))
	expired, _ := pem.Decode(old)
	later, renewal := certificateFor(t, f.key, time.Now().Add(3*time.Hour), time.Now().Add(48*time.Hour))
	replaceFile(t, f.certFile, append(pem.EncodeToMemory(expired), renewal...))
	setNow(cred, 2*time.Hour) // the token and the first certificate have expired
	refused := 0
	_, err := f.getToken(cred)
	for _, want := range append([]string{"is not valid yet"}, datesOf(later)...) {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("GetToken before the renewal's start: %v, want one holding %q", err, want)
		}
	}
	f.sim.AddTenant(mdesim.Tenant{TenantID: simTenantID, ClientID: simClientID, Certificate: later})
	setNow(cred, 4*time.Hour)
	for range 3 {
		if _, err := f.getToken(cred); err != nil {
			refused++
		}
	}
	if refused > 0 {
		t.Errorf("%d of 3 token requests after the renewal's start refused", refused)
	}
}

// TestCertificateFileWithTwoExpiredCertificatesOfItsKey: of certificates
// of the key all expired, the error gives the dates of the one that
// ended last, whichever comes first in the file.
func TestCertificateFileWithTwoExpiredCertificatesOfItsKey(t *testing.T) {
	t.Parallel()
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	older, _ := certificateFor(t, key, time.Now().Add(-96*time.Hour), time.Now().Add(-48*time.Hour))
	newer, _ := certificateFor(t, key, time.Now().Add(-72*time.Hour), time.Now().Add(-time.Hour))
	for _, certs := range [][]*x509.Certificate{{older, newer}, {newer, older}} {
		if cert, err := checkCertificateKey(certs, key, time.Now()); err != nil || cert != newer {
			t.Errorf("certificates ending %s and %s: error %v, the older chosen %v; want the later", certs[0].NotAfter, certs[1].NotAfter, err, cert == older)
		}
	}
}

// TestCertificateFileRenewalTakenAtItsStart: a renewal with the same key
// appended to the file before it starts is taken at its start. The
// certificate was chosen when the credential was built, and kept until
// the file changed or the login host refused it: the expiry gauge showed
// the old certificate's end, for its alert to fire with the renewal in
// place, and the old certificate was sent until it expired and a token
// request was refused.
func TestCertificateFileRenewalTakenAtItsStart(t *testing.T) {
	t.Parallel()
	f := setupCertLogin(t)
	data, err := os.ReadFile(f.certFile)
	if err != nil {
		t.Fatal(err)
	}
	current, key := pem.Decode(data) // valid from an hour ago for a day, then its key
	later, data := certificateFor(t, f.key, time.Now().Add(2*time.Hour), time.Now().Add(48*time.Hour))
	renewal, _ := pem.Decode(data)
	replaceFile(t, f.certFile, append(append(pem.EncodeToMemory(current), pem.EncodeToMemory(renewal)...), key...))
	cred := f.newCredential(t)
	if _, err := f.getToken(cred); err != nil {
		t.Fatalf("GetToken: %v", err)
	}
	f.sim.AddTenant(mdesim.Tenant{TenantID: simTenantID, ClientID: simClientID, Certificate: later})
	setNow(cred, 3*time.Hour)
	if notAfter, _ := cred.CertificateExpiry(); !notAfter.Equal(later.NotAfter) {
		t.Errorf("CertificateExpiry after the renewal's start: %s, want the renewal's %s", notAfter, later.NotAfter)
	}
	if _, err := f.getToken(cred); err != nil {
		t.Errorf("GetToken after the renewal's start: %v", err)
	}
	if n := f.sim.TokenRequests(simTenantID); n != 2 {
		t.Errorf("token requests = %d, want 2: the renewal's, once it started", n)
	}
}
