package mde

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
)

// A 4xx page on the way to the login host that is not Entra ID's answer
// (an egress proxy's or a firewall's "blocked by policy", a web server
// at a mistyped authorityHost) does not say the credentials were
// refused: Entra ID's refusals carry an OAuth error and an AADSTS code.
// Taken for a refusal, every request of the tenant failed unauthorized
// at once, and the operator was told to rotate a secret that works.
func TestLoginPageThatIsNotEntraIDs(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		name     string
		blockAll bool // the metadata too, as a proxy that blocks the host does
	}{{"token request", false}, {"every request", true}} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			const secret = "proxied-secret-0001"
			secretFile := filepath.Join(t.TempDir(), "secret")
			writeSecretFile(t, secretFile, secret, time.Now())
			login := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				base := "https://" + r.Host
				tenant, _, _ := strings.Cut(strings.TrimPrefix(r.URL.Path, "/"), "/")
				if !tt.blockAll && strings.HasSuffix(r.URL.Path, "/openid-configuration") {
					w.Header().Set("Content-Type", "application/json")
					io.WriteString(w, `{"token_endpoint":"`+base+`/`+tenant+`/oauth2/v2.0/token","authorization_endpoint":"`+base+`/`+tenant+`/oauth2/v2.0/authorize","issuer":"`+base+`/`+tenant+`/v2.0"}`)
					return
				}
				w.Header().Set("Content-Type", "text/html")
				w.WriteHeader(http.StatusForbidden)
				io.WriteString(w, "<html><body>Access to this site is blocked by your organization's policy.</body></html>")
			}))
			t.Cleanup(login.Close)
			c, err := ResolveCloud("commercial", "", login.URL, "")
			if err != nil {
				t.Fatal(err)
			}
			cred, err := NewCredential(CredentialConfig{TenantID: simTenantID, ClientID: simClientID, ClientSecretFile: secretFile}, c, login.Client())
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			_, err = cred.GetToken(ctx, policy.TokenRequestOptions{Scopes: []string{c.Scope}})
			if err == nil {
				t.Fatal("GetToken succeeded")
			}
			v := ClassifyError(context.Background(), err, false)
			if v.Class == Final || v.Reason == ReasonCredentialsRejected || strings.Contains(v.Error(), "refused the credentials") {
				t.Errorf("verdict %v/%v %q: a page that is not Entra ID's taken for a refusal of the credentials", v.Class, v.Reason, v.Error())
			}
			if !strings.Contains(v.Error(), "403") {
				t.Errorf("verdict %q does not give the status", v.Error())
			}
		})
	}
}
