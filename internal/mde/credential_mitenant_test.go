package mde

import (
	"context"
	"encoding/base64"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
)

// TestManagedIdentityTokenOfAnotherTenant: a managed identity gets tokens
// of its own Entra ID tenant only; the tenantId beside managedIdentity
// is sent nowhere. A tenantId that is not the identity's (another
// customer's, a typo) was taken, and every call acted in the identity's
// tenant: a device looked up by name there was offboarded. A token whose
// tid is another tenant's is now refused, naming the setting; one of the
// tenant, or one that is no JWT, is handed out. t.Setenv: not parallel.
func TestManagedIdentityTokenOfAnotherTenant(t *testing.T) {
	jwt := func(tid string) string {
		part := func(s string) string { return base64.RawURLEncoding.EncodeToString([]byte(s)) }
		return part(`{"typ":"JWT","alg":"RS256"}`) + "." + part(fmt.Sprintf(`{"aud":"x","tid":%q}`, tid)) + "." + part("signature")
	}
	var token string
	endpoint := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprintf(w, `{"access_token":%q,"expires_on":"%d","resource":"x","token_type":"Bearer"}`, token, time.Now().Add(time.Hour).Unix())
	}))
	t.Cleanup(endpoint.Close)
	t.Setenv("IDENTITY_ENDPOINT", endpoint.URL+"/msi/token")
	t.Setenv("IDENTITY_HEADER", "identity-endpoint-secret")
	for i, tc := range []struct {
		name, token string
		refused     bool
	}{
		{"another tenant's", jwt("99999999-2222-3333-4444-555555555555"), true},
		{"the tenant's", jwt(strings.ToUpper(simTenantID)), false},
		{"no JWT", "opaque-token", false},
	} {
		token = tc.token
		cred, err := NewCredential(CredentialConfig{TenantID: simTenantID, ManagedIdentity: true}, Clouds["commercial"], &http.Client{})
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		// A scope of each case's: the identity library keeps the tokens
		// of managed identities in one cache of the process.
		tok, err := cred.GetToken(ctx, policy.TokenRequestOptions{Scopes: []string{fmt.Sprintf("https://case%d.example/.default", i)}})
		cancel()
		switch {
		case tc.refused && err == nil:
			t.Errorf("%s token: handed out, want it refused", tc.name)
		case tc.refused && (!strings.Contains(err.Error(), "tenantId") || strings.Contains(err.Error(), tc.token)):
			t.Errorf("%s token: %v, want an error naming tenantId, without the token", tc.name, err)
		case !tc.refused && (err != nil || tok.Token != tc.token):
			t.Errorf("%s token: %v, want it handed out", tc.name, err)
		}
	}
}
