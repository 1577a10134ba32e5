package mde

import (
	"context"
	"crypto/sha1" //nolint:gosec // Service Fabric names its certificate by its SHA-1 thumbprint
	"encoding/hex"
	"fmt"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
)

// TestServiceFabricManagedIdentityGetsItsToken: on Service Fabric the
// environment names the node's identity endpoint (IDENTITY_ENDPOINT, an
// HTTPS address of the node), its secret (IDENTITY_HEADER) and its
// certificate's thumbprint (IDENTITY_SERVER_THUMBPRINT), and the
// identity library pins that certificate in a copy of the caller's
// *http.Client it makes itself: any other client it refuses. The
// worker's client, wrapped to bound the answers' size, was refused, and
// a tenant with managedIdentity on Service Fabric failed at start with
// "Service Fabric managed identity requires ClientOptions.Transport to
// be an *http.Client".
func TestServiceFabricManagedIdentityGetsItsToken(t *testing.T) {
	node := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Secret") != "node-secret" {
			http.Error(w, "no secret", http.StatusUnauthorized)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprintf(w, `{"access_token":"sf-token","expires_on":"%d","token_type":"Bearer","resource":"https://api.securitycenter.microsoft.com"}`,
			time.Now().Add(time.Hour).Unix())
	}))
	t.Cleanup(node.Close)
	thumb := sha1.Sum(node.Certificate().Raw) //nolint:gosec // as Service Fabric names it
	t.Setenv("IDENTITY_ENDPOINT", node.URL+"/metadata/identity/oauth2/token")
	t.Setenv("IDENTITY_HEADER", "node-secret")
	t.Setenv("IDENTITY_SERVER_THUMBPRINT", hex.EncodeToString(thumb[:]))
	cred, err := NewCredential(CredentialConfig{ManagedIdentity: true}, Clouds["commercial"], &http.Client{Transport: http.DefaultTransport.(*http.Transport).Clone()})
	if err != nil {
		t.Fatalf("managed identity on Service Fabric: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	tok, err := cred.GetToken(ctx, policy.TokenRequestOptions{Scopes: []string{Clouds["commercial"].Scope}})
	if err != nil {
		t.Fatalf("token from the node's endpoint: %v", err)
	}
	if tok.Token != "sf-token" {
		t.Errorf("token %q, want the node's", tok.Token)
	}
}
