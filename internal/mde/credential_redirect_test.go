package mde

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"

	"github.com/contoso-secops/mde-offboard/internal/testcert"
)

// TestCredentialFollowsNoLoginRedirect: a login host that answers the
// token request with a redirect to another host gets no token out of the
// credential, and the other host gets nothing: following would send the
// client secret, or the assertion signed with the certificate, there.
func TestCredentialFollowsNoLoginRedirect(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	const secret = "redirected-secret-0001"
	secretFile := filepath.Join(dir, "secret")
	writeSecretFile(t, secretFile, secret, time.Now())
	certFile := writeTestCertificate(t, dir)

	for _, status := range []int{http.StatusTemporaryRedirect, http.StatusPermanentRedirect, http.StatusFound} {
		for name, cc := range map[string]CredentialConfig{
			"clientSecretFile": {ClientSecretFile: secretFile},
			"certificateFile":  {CertificateFile: certFile},
		} {
			t.Run(fmt.Sprintf("%d/%s", status, name), func(t *testing.T) {
				t.Parallel()
				var mu sync.Mutex
				var elsewhere []string
				other := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
					body, _ := io.ReadAll(r.Body)
					mu.Lock()
					elsewhere = append(elsewhere, string(body))
					mu.Unlock()
					w.Header().Set("Content-Type", "application/json")
					io.WriteString(w, `{"token_type":"Bearer","expires_in":3599,"access_token":"from-elsewhere"}`)
				}))
				t.Cleanup(other.Close)
				login, c := loginHost(t, func(w http.ResponseWriter, r *http.Request) {
					http.Redirect(w, r, other.URL+"/token", status)
				})
				cc.TenantID, cc.ClientID = simTenantID, simClientID
				// The caller's client follows redirects, as Go's does.
				hc := login.Client()
				cred, err := NewCredential(cc, c, hc)
				if err != nil {
					t.Fatalf("NewCredential: %v", err)
				}
				if hc.CheckRedirect != nil {
					t.Errorf("NewCredential changed the caller's http.Client")
				}
				tok, err := cred.GetToken(context.Background(), policy.TokenRequestOptions{Scopes: []string{c.Scope}})
				if err == nil {
					t.Errorf("GetToken = a token (%d characters), want an error", len(tok.Token))
				} else {
					checkTokenErrorText(t, err, secret)
				}
				mu.Lock()
				defer mu.Unlock()
				if len(elsewhere) != 0 {
					t.Errorf("the redirect's target got %d requests, want 0", len(elsewhere))
				}
			})
		}
	}
}

// writeTestCertificate writes a self-signed certificate and its key as
// one PEM file, the form certificateFile takes, and returns its path.
func writeTestCertificate(t *testing.T, dir string) string {
	t.Helper()
	path := filepath.Join(dir, "cert.pem")
	testcert.Write(t, path, "offboard-test")
	return path
}

// TestManagedIdentityFollowsNoRedirect: the identity endpoint answering
// with a redirect gets no token out of the credential, and the other host
// never sees the endpoint's secret header. t.Setenv: not parallel.
func TestManagedIdentityFollowsNoRedirect(t *testing.T) {
	var mu sync.Mutex
	var elsewhere []string
	other := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		elsewhere = append(elsewhere, r.Header.Get("X-Identity-Header"))
		mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, `{"access_token":"from-elsewhere","expires_on":"9999999999","resource":"x","token_type":"Bearer"}`)
	}))
	t.Cleanup(other.Close)
	endpoint := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, other.URL+r.URL.RequestURI(), http.StatusTemporaryRedirect)
	}))
	t.Cleanup(endpoint.Close)
	t.Setenv("IDENTITY_ENDPOINT", endpoint.URL+"/msi/token")
	t.Setenv("IDENTITY_HEADER", "identity-endpoint-secret")
	cred, err := NewCredential(CredentialConfig{ManagedIdentity: true}, Clouds["commercial"], &http.Client{})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if tok, err := cred.GetToken(ctx, policy.TokenRequestOptions{Scopes: []string{Clouds["commercial"].Scope}}); err == nil {
		t.Errorf("GetToken = a token (%d characters) from the redirect's target, want an error", len(tok.Token))
	}
	mu.Lock()
	defer mu.Unlock()
	if len(elsewhere) != 0 {
		t.Errorf("the redirect's target got %d requests, want 0", len(elsewhere))
	}
}
