package mde

import (
	"errors"
	"os"
	"strings"
	"testing"
	"time"
)

// What a clientSecretFile may hold by mistake: a certificate or key, as
// PEM or as PKCS#12 (DER, binary). None is sent as a client secret.
var notClientSecrets = map[string]string{
	"PEM key":         "-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASC\n-----END PRIVATE KEY-----\n",
	"PEM certificate": "-----BEGIN CERTIFICATE-----\nMIIC+zCCAeOgAwIBAgIJAJ\n-----END CERTIFICATE-----\n",
	"PEM in text":     "Bag Attributes\n    localKeyID: 01 00 00 00\n-----BEGIN ENCRYPTED PRIVATE KEY-----\nMIIFHDBOBgkqhkiG9w0BBQ0wQTApBgkqhkiG9w0BDAwwHAQI\n-----END ENCRYPTED PRIVATE KEY-----\n",
	"PKCS#12":         "0\x82\x0a\x1f\x02\x01\x030\x82\x09\xe5\x06\x09*\x86H\x86\xf7\x0d\x01\x07\x01\xa0\x82",
	"control bytes":   "abc\x00def\x01ghi",
}

func TestClientSecretFileHoldingACertificate(t *testing.T) {
	t.Parallel()
	for name, content := range notClientSecrets {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			f := setupLogin(t, "right-secret-0201", "right-secret-0201")
			if err := os.WriteFile(f.secretFile, []byte(content), 0o600); err != nil {
				t.Fatal(err)
			}
			_, err := NewCredential(f.cc, f.cloud, f.hc)
			if err == nil || !strings.Contains(err.Error(), "clientSecretFile: the file it names holds") || !strings.Contains(err.Error(), "certificateFile") {
				t.Errorf("NewCredential: err = %v, want one saying clientSecretFile holds a certificate and pointing to certificateFile", err)
			}
			checkNoSecret(t, err, "MII", "PRIVATE", "\x82")
			if n := f.sim.TokenRequests(simTenantID); n != 0 {
				t.Errorf("the login host got %d token requests, want 0", n)
			}
		})
	}

	// Replaced after the start: the token request is not sent either.
	t.Run("reload", func(t *testing.T) {
		t.Parallel()
		f := setupLogin(t, "right-secret-0202", "right-secret-0202")
		cred := f.newCredential(t)
		if err := os.WriteFile(f.secretFile, []byte(notClientSecrets["PEM key"]), 0o600); err != nil {
			t.Fatal(err)
		}
		later := time.Now().Add(time.Minute)
		if err := os.Chtimes(f.secretFile, later, later); err != nil {
			t.Fatal(err)
		}
		_, err := f.getToken(cred)
		var te *TokenError
		if !errors.As(err, &te) || te.Final || te.File != f.secretFile {
			t.Fatalf("GetToken: err = %v, want a TokenError for the secret file, not final", err)
		}
		if n := f.sim.TokenRequests(simTenantID); n != 0 {
			t.Errorf("the login host got %d token requests, want 0", n)
		}
	})
}

// A client secret as Entra ID makes them, and others of printable
// characters, are sent as they are.
func TestClientSecretFileOrdinarySecrets(t *testing.T) {
	t.Parallel()
	for _, secret := range []string{
		"Abc8Q~0123456789.abcdefghij_KLMNOPQRS-tuv",
		"a-----BEGIN",
		"pässwörd with spaces",
	} {
		f := setupLogin(t, secret, secret)
		cred := f.newCredential(t)
		if tok, err := f.getToken(cred); err != nil || tok == "" {
			checkNoSecret(t, err, secret)
			t.Errorf("GetToken: err = %v, empty token %v", err, tok == "")
		}
	}
}

// t.Setenv: not parallel.
func TestClientSecretEnvHoldingACertificate(t *testing.T) {
	const name = "MDE_OFFBOARD_TEST_CLIENT_SECRET_PEM"
	t.Setenv(name, notClientSecrets["PEM key"])
	cc := CredentialConfig{TenantID: simTenantID, ClientID: simClientID, ClientSecretEnv: name}
	_, err := NewCredential(cc, Clouds["commercial"], nil)
	if err == nil || !strings.Contains(err.Error(), "clientSecretEnv: the environment variable it names holds a certificate or key") {
		t.Errorf("NewCredential: err = %v, want one saying clientSecretEnv holds a certificate or key", err)
	}
	checkNoSecret(t, err, "MII", "PRIVATE", name)
}
