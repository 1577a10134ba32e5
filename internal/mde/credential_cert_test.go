package mde

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// testCertificate makes a self-signed certificate and its RSA key, as PEM.
func testCertificate(t *testing.T) (certPEM, keyPEM []byte) {
	t.Helper()
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := certificateFor(t, key, time.Now().Add(-time.Hour), time.Now().Add(time.Hour))
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cert.Raw}), pkcs8PEM(t, key)
}

func pkcs8PEM(t *testing.T, key any) []byte {
	t.Helper()
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})
}

// A certificate file whose key cannot sign for its certificate says so,
// naming the setting: a key of another certificate, or not an RSA key.
func TestCertificateFileWithAnUnusableKey(t *testing.T) {
	t.Parallel()
	cert, _ := testCertificate(t)
	_, otherKey := testCertificate(t)
	ec, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, want string
		key        []byte
	}{
		{"another certificate's key", "certificateFile: the private key in the file it names belongs to none of its certificates", otherKey},
		{"an EC key", "certificateFile: the private key in the file it names is not an RSA key", pkcs8PEM(t, ec)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			path := filepath.Join(t.TempDir(), "cert.pem")
			if err := os.WriteFile(path, append(append([]byte{}, cert...), tc.key...), 0o600); err != nil {
				t.Fatal(err)
			}
			c, err := ResolveCloud("commercial", "", "", "")
			if err != nil {
				t.Fatal(err)
			}
			_, err = NewCredential(CredentialConfig{TenantID: simTenantID, ClientID: simClientID, CertificateFile: path}, c, nil)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("NewCredential: %v, want %q", err, tc.want)
			}
		})
	}
}

// A PEM file whose key is encrypted says that only PKCS#12 may be, even
// with a password file set: "wrong format or password" sent the operator
// looking for a typo in the password.
func TestCertificateFileWithAnEncryptedPEMKey(t *testing.T) {
	t.Parallel()
	cert, _ := testCertificate(t)
	dir := t.TempDir()
	// What openssl pkcs8 -topk8 writes; the content is not read.
	encrypted := pem.EncodeToMemory(&pem.Block{Type: "ENCRYPTED PRIVATE KEY", Bytes: []byte("not read")})
	// The older form: a PKCS#1 key with a Proc-Type header.
	legacy := pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Headers: map[string]string{
		"Proc-Type": "4,ENCRYPTED", "DEK-Info": "AES-256-CBC,00112233445566778899AABBCCDDEEFF",
	}, Bytes: []byte("not read either")})
	password := filepath.Join(dir, "password")
	if err := os.WriteFile(password, []byte("pem-password-1\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	const want = "certificateFile: an encrypted PEM key is not supported: export the certificate as PKCS#12 (.pfx) with its password, or the key unencrypted"
	for name, key := range map[string][]byte{"PKCS#8": encrypted, "PKCS#1": legacy} {
		for i, pw := range []string{password, ""} {
			path := filepath.Join(dir, fmt.Sprintf("%s-%d.pem", name, i))
			if err := os.WriteFile(path, append(append([]byte{}, cert...), key...), 0o600); err != nil {
				t.Fatal(err)
			}
			cc := CredentialConfig{TenantID: simTenantID, ClientID: simClientID, CertificateFile: path, CertificatePasswordFile: pw}
			_, err := NewCredential(cc, Clouds["commercial"], nil)
			if err == nil || !strings.Contains(err.Error(), want) {
				t.Errorf("%s key, password file %q: NewCredential: %v, want %q", name, pw, err, want)
			}
			checkNoSecret(t, err, "pem-password-1")
		}
	}
}
