package mde

import (
	"bytes"
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"math/big"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azidentity"
	pkcs12 "software.sslmate.com/src/go-pkcs12"

	"github.com/contoso-secops/mde-offboard/internal/mde/mdesim"
)

// certificateFor makes a self-signed certificate of key valid from
// notBefore to notAfter, and the PEM file certificateFile takes: the
// certificate, then its key.
func certificateFor(t *testing.T, key *rsa.PrivateKey, notBefore, notAfter time.Time) (*x509.Certificate, []byte) {
	t.Helper()
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(notBefore.UnixNano()), Subject: pkix.Name{CommonName: "offboard-dates-test"},
		NotBefore: notBefore, NotAfter: notAfter,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return cert, append(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), pkcs8PEM(t, key)...)
}

// replaceFile puts data in place of path by a rename, as a Kubernetes
// secret volume or install does.
func replaceFile(t *testing.T, path string, data []byte) {
	t.Helper()
	tmp := path + ".new"
	if err := os.WriteFile(tmp, data, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

// certLogin is an mdesim server with one tenant whose application logs in
// with a certificate, and the certificate file.
type certLogin struct {
	*loginFixture
	key      *rsa.PrivateKey
	certFile string
}

func setupCertLogin(t *testing.T) *certLogin {
	t.Helper()
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	cert, data := certificateFor(t, key, time.Now().Add(-time.Hour), time.Now().Add(24*time.Hour))
	sim := mdesim.New(mdesim.Options{})
	sim.AddTenant(mdesim.Tenant{TenantID: simTenantID, ClientID: simClientID, Certificate: cert})
	base := sim.StartTLS()
	t.Cleanup(sim.Close)
	tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: sim.CertPool(), MinVersion: tls.VersionTLS12}}
	t.Cleanup(tr.CloseIdleConnections)
	c, err := ResolveCloud("commercial", base, base, "")
	if err != nil {
		t.Fatal(err)
	}
	f := &certLogin{key: key, certFile: filepath.Join(t.TempDir(), "cert.pem")}
	if err := os.WriteFile(f.certFile, data, 0o600); err != nil {
		t.Fatal(err)
	}
	f.loginFixture = &loginFixture{sim: sim, cloud: c, hc: &http.Client{Transport: tr},
		cc: CredentialConfig{TenantID: simTenantID, ClientID: simClientID, CertificateFile: f.certFile}}
	return f
}

// setNow moves the credential's clock to d from now.
func setNow(cred *Credential, d time.Duration) {
	cred.mu.Lock()
	cred.now = func() time.Time { return time.Now().Add(d) }
	cred.mu.Unlock()
}

// datesOf is how an error shows a certificate's validity.
func datesOf(c *x509.Certificate) []string {
	return []string{c.NotBefore.UTC().Format(time.RFC3339), c.NotAfter.UTC().Format(time.RFC3339)}
}

// A certificate out of its validity is refused at start, naming the
// setting and its dates: the login host would refuse it at the first
// token request, with a code that does not say which file.
func TestCertificateOutOfItsDatesRefusedAtStart(t *testing.T) {
	t.Parallel()
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	for _, tc := range []struct {
		name, want          string
		notBefore, notAfter time.Time
	}{
		{"expired", "has expired", now.Add(-48 * time.Hour), now.Add(-time.Hour)},
		{"not valid yet", "is not valid yet", now.Add(time.Hour), now.Add(48 * time.Hour)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			cert, data := certificateFor(t, key, tc.notBefore, tc.notAfter)
			path := filepath.Join(t.TempDir(), "cert.pem")
			if err := os.WriteFile(path, data, 0o600); err != nil {
				t.Fatal(err)
			}
			_, err := NewCredential(CredentialConfig{TenantID: simTenantID, ClientID: simClientID, CertificateFile: path}, Clouds["commercial"], nil)
			if err == nil {
				t.Fatal("NewCredential: no error")
			}
			for _, want := range append([]string{"certificateFile", tc.want}, datesOf(cert)...) {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("NewCredential: %v, want one holding %q", err, want)
				}
			}
		})
	}
}

// An expired certificate put in place of a working one while running is
// a broken file: it does not replace the credential, whose last token
// serves until it expires; then the token request fails naming the
// certificate's dates, without asking the login host.
func TestExpiredCertificateAtReload(t *testing.T) {
	t.Parallel()
	f := setupCertLogin(t)
	cred := f.newCredential(t)
	first, err := f.getToken(cred)
	if err != nil {
		t.Fatalf("GetToken: %v", err)
	}
	expired, data := certificateFor(t, f.key, time.Now().Add(-48*time.Hour), time.Now().Add(-time.Hour))
	replaceFile(t, f.certFile, data)
	setNow(cred, lookEvery)
	if tok, err := f.getToken(cred); err != nil || tok != first {
		t.Errorf("GetToken after an expired certificate replaced the file: err = %v, same token %v; want the last token", err, tok == first)
	}
	setNow(cred, 2*time.Hour) // the token has expired
	_, err = f.getToken(cred)
	var te *TokenError
	if !errors.As(err, &te) {
		t.Fatalf("GetToken once the token expired: %v, want a *TokenError", err)
	}
	for _, want := range append([]string{"certificateFile", "has expired"}, datesOf(expired)...) {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("GetToken once the token expired: %v, want one holding %q", err, want)
		}
	}
	if n := f.sim.TokenRequests(simTenantID); n != 1 {
		t.Errorf("token requests = %d, want 1: the expired certificate is not sent", n)
	}
}

// pkcs12For exports the certificate and key of a PEM file as PKCS#12
// encrypted with password, in the algorithms every reader takes (SHA-1
// and 3DES, as Windows exported them until recently).
func pkcs12For(t *testing.T, pemData []byte, password string) []byte {
	t.Helper()
	return pkcs12With(t, pkcs12.LegacyDES, pemData, password)
}

// pkcs12With exports the certificate and key of a PEM file as PKCS#12
// encrypted with password by enc.
func pkcs12With(t *testing.T, enc *pkcs12.Encoder, pemData []byte, password string) []byte {
	t.Helper()
	certs, key, err := azidentity.ParseCertificates(pemData, nil)
	if err != nil {
		t.Fatal(err)
	}
	data, err := enc.Encode(key, certs[0], certs[1:], password)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

// setupPKCS12Login is setupCertLogin with the certificate exported as
// PKCS#12 with password, and its password file.
func setupPKCS12Login(t *testing.T, password string) (f *certLogin, passwordFile string) {
	t.Helper()
	f = setupCertLogin(t)
	data, err := os.ReadFile(f.certFile)
	if err != nil {
		t.Fatal(err)
	}
	replaceFile(t, f.certFile, pkcs12For(t, data, password))
	passwordFile = filepath.Join(t.TempDir(), "password")
	if err := os.WriteFile(passwordFile, []byte(password+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	f.cc.CertificatePasswordFile = passwordFile
	return f, passwordFile
}

// A certificate password file changed alone is picked up, as the
// certificate file is: it builds the credential again.
func TestCertificatePasswordFileWatched(t *testing.T) {
	t.Parallel()
	const password = "pfx-password-1"
	f, passwordFile := setupPKCS12Login(t, password)
	cred := f.newCredential(t)
	if _, err := f.getToken(cred); err != nil {
		t.Fatalf("GetToken: %v", err)
	}
	replaceFile(t, passwordFile, []byte(password+"\r\n")) // another file, the same password
	setNow(cred, lookEvery)
	if _, err := f.getToken(cred); err != nil {
		t.Fatalf("GetToken after the password file changed: %v", err)
	}
	if n := f.sim.TokenRequests(simTenantID); n != 2 {
		t.Errorf("token requests = %d, want 2: a changed password file builds the credential again", n)
	}
}

// countBuilds counts the credential's builds from now on.
func countBuilds(cred *Credential) *atomic.Int32 {
	var n atomic.Int32
	build := cred.build
	cred.build = func() (azcore.TokenCredential, error) {
		n.Add(1)
		return build()
	}
	return &n
}

// A certificate file that could not be used is not read and parsed again
// at each token request, until it changes: the calls of a busy tenant
// would each read it whole, one at a time. They get the same error.
func TestBrokenCertificateFileReadOnceUntilItChanges(t *testing.T) {
	t.Parallel()
	f := setupCertLogin(t)
	cred := f.newCredential(t)
	good, err := os.ReadFile(f.certFile)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.getToken(cred); err != nil {
		t.Fatalf("GetToken: %v", err)
	}
	builds := countBuilds(cred)
	replaceFile(t, f.certFile, bytes.Repeat([]byte("garbage "), 64<<10))
	setNow(cred, 2*time.Hour) // the token has expired
	var first error
	for i := range 20 {
		_, err := f.getToken(cred)
		if err == nil {
			t.Fatalf("GetToken %d with a broken certificate file: no error", i)
		}
		if first == nil {
			first = err
		} else if err.Error() != first.Error() {
			t.Errorf("GetToken %d: %v, want the first error again: %v", i, err, first)
		}
	}
	if n := builds.Load(); n != 1 {
		t.Errorf("the broken file was read %d times, want 1", n)
	}
	replaceFile(t, f.certFile, good)
	if _, err := f.getToken(cred); err != nil {
		t.Errorf("GetToken once the file was put right: %v", err)
	}
	if n := builds.Load(); n != 2 {
		t.Errorf("builds = %d, want 2: the file put right is read", n)
	}
}

// A certificate not valid yet is refused until its NotBefore, then read
// again although its file did not change.
func TestCertificateNotValidYetReadAgainAtItsStart(t *testing.T) {
	t.Parallel()
	f := setupCertLogin(t)
	cred := f.newCredential(t)
	if _, err := f.getToken(cred); err != nil {
		t.Fatalf("GetToken: %v", err)
	}
	builds := countBuilds(cred)
	later, data := certificateFor(t, f.key, time.Now().Add(3*time.Hour), time.Now().Add(48*time.Hour))
	replaceFile(t, f.certFile, data)
	setNow(cred, 2*time.Hour)
	for range 3 {
		if _, err := f.getToken(cred); err == nil || !strings.Contains(err.Error(), "is not valid yet") {
			t.Errorf("GetToken before the certificate's start: %v, want it not valid yet", err)
		}
	}
	f.sim.AddTenant(mdesim.Tenant{TenantID: simTenantID, ClientID: simClientID, Certificate: later})
	setNow(cred, 4*time.Hour)
	if _, err := f.getToken(cred); err != nil {
		t.Errorf("GetToken after the certificate's start: %v", err)
	}
	if n := builds.Load(); n != 2 {
		t.Errorf("builds = %d, want 2", n)
	}
}

// A PKCS#12 file exported again with a new password, put in place before
// its password file, is refused until the password file follows; then it
// is read with the new password, without a restart.
func TestCertificateExportedAgainWithANewPassword(t *testing.T) {
	t.Parallel()
	f, passwordFile := setupPKCS12Login(t, "pfx-password-old")
	cred := f.newCredential(t)
	if _, err := f.getToken(cred); err != nil {
		t.Fatalf("GetToken: %v", err)
	}
	_, data := certificateFor(t, f.key, time.Now().Add(-time.Hour), time.Now().Add(24*time.Hour))
	cert, err := x509.ParseCertificate(mustDecodePEM(t, data))
	if err != nil {
		t.Fatal(err)
	}
	f.sim.AddTenant(mdesim.Tenant{TenantID: simTenantID, ClientID: simClientID, Certificate: cert})
	replaceFile(t, f.certFile, pkcs12For(t, data, "pfx-password-new"))
	setNow(cred, 2*time.Hour) // the token has expired
	for range 3 {
		if _, err := f.getToken(cred); err == nil {
			t.Fatal("GetToken with the old password for the new file: no error")
		}
	}
	replaceFile(t, passwordFile, []byte("pfx-password-new\n"))
	if _, err := f.getToken(cred); err != nil {
		checkNoSecret(t, err, "pfx-password-old", "pfx-password-new")
		t.Errorf("GetToken once the new password is in place: %v", err)
	}
}

// mustDecodePEM returns the first PEM block's bytes.
func mustDecodePEM(t *testing.T, data []byte) []byte {
	t.Helper()
	b, _ := pem.Decode(data)
	if b == nil {
		t.Fatal("no PEM block")
	}
	return b.Bytes
}

// A rebuild that fails is told once for the files as they are, however
// many token requests find them so, and again for the next broken
// change: the operator hears of it when the file changes, not once the
// last token has expired.
func TestBrokenFileToldOncePerChange(t *testing.T) {
	t.Parallel()
	f := setupCertLogin(t)
	cred := f.newCredential(t)
	var told []error
	cred.OnBrokenFile(func(err error) { told = append(told, err) })
	good, err := os.ReadFile(f.certFile)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.getToken(cred); err != nil {
		t.Fatalf("GetToken: %v", err)
	}
	expired, data := certificateFor(t, f.key, time.Now().Add(-48*time.Hour), time.Now().Add(-time.Hour))
	replaceFile(t, f.certFile, data)
	for i := range 5 {
		setNow(cred, time.Duration(i+1)*lookEvery)
		if _, err := f.getToken(cred); err != nil {
			t.Fatalf("GetToken with the last token good: %v", err)
		}
	}
	if len(told) != 1 || !strings.Contains(told[0].Error(), datesOf(expired)[1]) {
		t.Fatalf("told %v, want the expired certificate once", told)
	}
	replaceFile(t, f.certFile, good)
	setNow(cred, 10*lookEvery)
	if _, err := f.getToken(cred); err != nil {
		t.Fatalf("GetToken with the good file back: %v", err)
	}
	replaceFile(t, f.certFile, []byte("not a certificate"))
	setNow(cred, 12*lookEvery)
	_, _ = f.getToken(cred)
	if len(told) != 2 || !strings.Contains(told[1].Error(), "certificateFile") {
		t.Errorf("told %v, want the broken file told as the second", told)
	}
}

// CertificateExpiry is when the certificate the credential signs with
// stops being valid: the one in use, not a broken replacement; none for
// a client secret.
func TestCertificateExpiry(t *testing.T) {
	t.Parallel()
	f := setupCertLogin(t)
	cred := f.newCredential(t)
	at, ok := cred.CertificateExpiry()
	if !ok || at.IsZero() {
		t.Fatalf("CertificateExpiry = %v, %v; want the certificate's NotAfter", at, ok)
	}
	first := at
	later, data := certificateFor(t, f.key, time.Now().Add(-time.Hour), time.Now().Add(90*24*time.Hour))
	f.sim.AddTenant(mdesim.Tenant{TenantID: simTenantID, ClientID: simClientID, Certificate: later})
	replaceFile(t, f.certFile, data)
	setNow(cred, lookEvery)
	if _, err := f.getToken(cred); err != nil {
		t.Fatalf("GetToken after the rotation: %v", err)
	}
	if at, _ := cred.CertificateExpiry(); !at.Equal(later.NotAfter) || at.Equal(first) {
		t.Errorf("CertificateExpiry after the rotation = %v, want %v", at, later.NotAfter)
	}
	replaceFile(t, f.certFile, []byte("not a certificate"))
	setNow(cred, 2*lookEvery)
	_, _ = f.getToken(cred)
	if at, _ := cred.CertificateExpiry(); !at.Equal(later.NotAfter) {
		t.Errorf("CertificateExpiry with a broken replacement = %v, want the one in use, %v", at, later.NotAfter)
	}

	secret := setupLogin(t, "s3cret", "s3cret")
	if at, ok := secret.newCredential(t).CertificateExpiry(); ok {
		t.Errorf("a client secret's CertificateExpiry = %v, true; want none", at)
	}
}
