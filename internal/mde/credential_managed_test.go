package mde

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
)

// A managed identity's token comes from the managed identity endpoint
// (the instance metadata service, or the one IDENTITY_ENDPOINT names),
// never from the login host: its failures name that endpoint. Named as
// the login host's, they sent an operator to look at the way to
// login.microsoftonline.com, which the worker never took, while the
// endpoint was closed or refused the identity.
func TestManagedIdentityFailureNamesItsEndpoint(t *testing.T) {
	for _, tt := range []struct {
		name   string
		status int
		body   string
	}{
		{"identity refused", http.StatusBadRequest, `{"error":"invalid_request","error_description":"Identity not found"}`},
		// App Service's endpoint answers in a shape of its own: not a
		// proxy's page, which only the login host's answers are judged by.
		{"identity refused by App Service", http.StatusBadRequest, `{"statusCode":400,"message":"No ManagedIdentity found for specified ClientId/ResourceId/PrincipalId."}`},
		{"answer not a token", http.StatusOK, `<html>proxy</html>`},
	} {
		t.Run(tt.name, func(t *testing.T) {
			endpoint := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
				w.Header().Set("Content-Type", "application/json")
				w.WriteHeader(tt.status)
				io.WriteString(w, tt.body)
			}))
			t.Cleanup(endpoint.Close)
			t.Setenv("IDENTITY_ENDPOINT", endpoint.URL+"/msi/token")
			t.Setenv("IDENTITY_HEADER", "identity-endpoint-secret")
			cred, err := NewCredential(CredentialConfig{ManagedIdentity: true}, Clouds["commercial"], &http.Client{})
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			_, err = cred.GetToken(ctx, policy.TokenRequestOptions{Scopes: []string{Clouds["commercial"].Scope}})
			if err == nil {
				t.Fatal("GetToken succeeded")
			}
			msg := ClassifyError(context.Background(), err, false).Error()
			if !strings.Contains(msg, "managed identity endpoint") || strings.Contains(msg, "login") {
				t.Errorf("error %q, want it to name the managed identity endpoint, not the login host", msg)
			}
			if strings.Contains(msg, "proxy") {
				t.Errorf("error %q takes the endpoint's answer for a proxy's page", msg)
			}
			if strings.Contains(msg, "identity-endpoint-secret") {
				t.Errorf("error %q shows the endpoint's header", msg)
			}
		})
	}
}
