package mde

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
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
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "mde-offboard-test"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), pkcs8PEM(t, key)
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
