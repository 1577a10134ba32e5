//go:build unix

package mde

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"

	"github.com/contoso-secops/mde-offboard/internal/mde/mdesim"
)

// notCredentialFiles makes, in dir, what a credential file's setting may
// name by mistake, by name: a FIFO (opening it waits for a writer),
// /dev/zero (it never ends), and a regular file one byte over limit.
func notCredentialFiles(t *testing.T, dir string, limit int) map[string]string {
	t.Helper()
	fifo := filepath.Join(dir, "fifo")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatalf("mkfifo: %v", err)
	}
	big := filepath.Join(dir, "big")
	if err := os.WriteFile(big, bytes.Repeat([]byte("a"), limit+1), 0o600); err != nil {
		t.Fatal(err)
	}
	return map[string]string{"fifo": fifo, "device": "/dev/zero", "too large": big}
}

// returnsSoon runs f and returns its error, failing the test when f has
// not returned within a few seconds; it then opens fifo for writing,
// which lets a reader blocked on it go on.
func returnsSoon(t *testing.T, fifo string, f func() error) error {
	t.Helper()
	done := make(chan error, 1)
	go func() { done <- f() }()
	select {
	case err := <-done:
		return err
	case <-time.After(5 * time.Second):
		t.Errorf("still reading the file after 5s")
		if w, err := os.OpenFile(fifo, os.O_WRONLY, 0); err == nil {
			_ = w.Close()
		}
		return <-done
	}
}

// wantInError is the text a credential file that is not one gets.
func wantInError(field, kind, limit string) string {
	if kind == "too large" {
		return field + ": the file it names is larger than " + limit
	}
	return field + ": the file it names is not a regular file"
}

func TestCredentialFilesAreBounded(t *testing.T) {
	t.Parallel()
	certFile := writeTestCertificate(t, t.TempDir())
	for _, tt := range []struct {
		field string
		limit int
		shown string
		cc    func(path string) CredentialConfig
	}{
		{"clientSecretFile", maxSecretFile, "64 KiB", func(p string) CredentialConfig { return CredentialConfig{ClientSecretFile: p} }},
		{"certificateFile", maxCertificateFile, "4096 KiB", func(p string) CredentialConfig { return CredentialConfig{CertificateFile: p} }},
		{"certificatePasswordFile", maxSecretFile, "64 KiB", func(p string) CredentialConfig {
			return CredentialConfig{CertificateFile: certFile, CertificatePasswordFile: p}
		}},
	} {
		t.Run(tt.field, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			for kind, path := range notCredentialFiles(t, dir, tt.limit) {
				t.Run(kind, func(t *testing.T) {
					cc := tt.cc(path)
					cc.TenantID, cc.ClientID = simTenantID, simClientID
					err := returnsSoon(t, filepath.Join(dir, "fifo"), func() error {
						_, err := NewCredential(cc, Clouds["commercial"], nil)
						return err
					})
					if want := wantInError(tt.field, kind, tt.shown); err == nil || !strings.Contains(err.Error(), want) {
						t.Errorf("NewCredential: err = %v, want one holding %q", err, want)
					}
					checkNoSecret(t, err, dir)
				})
			}
		})
	}

	t.Run("at the bound", func(t *testing.T) {
		t.Parallel()
		path := filepath.Join(t.TempDir(), "secret")
		if err := os.WriteFile(path, bytes.Repeat([]byte("s"), maxSecretFile), 0o600); err != nil {
			t.Fatal(err)
		}
		cc := CredentialConfig{TenantID: simTenantID, ClientID: simClientID, ClientSecretFile: path}
		if _, err := NewCredential(cc, Clouds["commercial"], nil); err != nil {
			t.Errorf("NewCredential with a secret file of %d bytes: %v", maxSecretFile, err)
		}
	})
}

// A reload reads the file as the start does: a secret file replaced by
// one too large fails the token, and is never read whole.
func TestCredentialFileReloadIsBounded(t *testing.T) {
	t.Parallel()
	const secret = "bounded-secret-0001"
	f := setupLogin(t, secret, secret)
	cred := f.newCredential(t)
	if err := os.WriteFile(f.secretFile, bytes.Repeat([]byte("a"), maxSecretFile+1), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Chtimes(f.secretFile, time.Now().Add(time.Minute), time.Now().Add(time.Minute)); err != nil {
		t.Fatal(err)
	}
	_, err := f.getToken(cred)
	var te *TokenError
	if !errors.As(err, &te) || te.Final || te.File != f.secretFile {
		t.Fatalf("GetToken after the file grew: err = %v, want a *TokenError for the secret file, not final", err)
	}
}

// workloadFixture is an mdesim server whose tenant accepts a federated
// token, and a credential config for it.
type workloadFixture struct {
	cloud Cloud
	hc    *http.Client
	token string
}

func setupWorkload(t *testing.T) *workloadFixture {
	t.Helper()
	const federated = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJzeXN0ZW06c2VydmljZWFjY291bnQifQ.federated-0001"
	sim := mdesim.New(mdesim.Options{})
	sim.AddTenant(mdesim.Tenant{TenantID: simTenantID, ClientID: simClientID, FederatedToken: federated})
	base := sim.StartTLS()
	t.Cleanup(sim.Close)
	tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: sim.CertPool()}}
	t.Cleanup(tr.CloseIdleConnections)
	c, err := ResolveCloud("commercial", base, base, "")
	if err != nil {
		t.Fatal(err)
	}
	return &workloadFixture{cloud: c, hc: &http.Client{Transport: tr}, token: federated}
}

func (w *workloadFixture) getToken(t *testing.T, tokenFile string) (string, error) {
	t.Helper()
	cc := CredentialConfig{TenantID: simTenantID, ClientID: simClientID, WorkloadIdentity: true, TokenFile: tokenFile}
	cred, err := NewCredential(cc, w.cloud, w.hc)
	if err != nil {
		return "", err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	tok, err := cred.GetToken(ctx, policy.TokenRequestOptions{Scopes: []string{w.cloud.Scope}})
	return tok.Token, err
}

func TestWorkloadIdentityTokenFile(t *testing.T) {
	t.Parallel()
	w := setupWorkload(t)

	t.Run("read", func(t *testing.T) {
		t.Parallel()
		path := filepath.Join(t.TempDir(), "token")
		if err := os.WriteFile(path, []byte(w.token), 0o600); err != nil {
			t.Fatal(err)
		}
		if tok, err := w.getToken(t, path); err != nil || tok == "" {
			t.Errorf("GetToken: err = %v, empty token %v", err, tok == "")
		}
	})

	// A file that is not one at start fails NewCredential
	// (TestWorkloadIdentityTokenFileCheckedAtStart); one replaced by it
	// while running fails the token request, not for good: the file
	// may be put right.
	dir := t.TempDir()
	for kind, path := range notCredentialFiles(t, dir, maxSecretFile) {
		t.Run(kind, func(t *testing.T) {
			t.Parallel()
			tokenFile := filepath.Join(t.TempDir(), "token")
			if err := os.WriteFile(tokenFile, []byte(w.token), 0o600); err != nil {
				t.Fatal(err)
			}
			cc := CredentialConfig{TenantID: simTenantID, ClientID: simClientID, WorkloadIdentity: true, TokenFile: tokenFile}
			cred, err := NewCredential(cc, w.cloud, w.hc)
			if err != nil {
				t.Fatal(err)
			}
			if err := os.Symlink(path, tokenFile+".new"); err != nil {
				t.Fatal(err)
			}
			if err := os.Rename(tokenFile+".new", tokenFile); err != nil {
				t.Fatal(err)
			}
			err = returnsSoon(t, filepath.Join(dir, "fifo"), func() error {
				_, err := cred.GetToken(context.Background(), policy.TokenRequestOptions{Scopes: []string{w.cloud.Scope}})
				return err
			})
			var te *TokenError
			if !errors.As(err, &te) || te.Final {
				t.Fatalf("GetToken: err = %v, want a *TokenError, not final", err)
			}
			if want := wantInError("tokenFile", kind, "64 KiB"); !strings.Contains(err.Error(), want) {
				t.Errorf("GetToken: err = %v, want one holding %q", err, want)
			}
			checkNoSecret(t, err, dir)
		})
	}
}

// The token file defaults to AZURE_FEDERATED_TOKEN_FILE, as in
// azidentity. t.Setenv: not parallel.
func TestWorkloadIdentityTokenFileFromEnvironment(t *testing.T) {
	w := setupWorkload(t)
	path := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(path, []byte(w.token), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("AZURE_FEDERATED_TOKEN_FILE", path)
	if tok, err := w.getToken(t, ""); err != nil || tok == "" {
		t.Errorf("GetToken: err = %v, empty token %v", err, tok == "")
	}
}
