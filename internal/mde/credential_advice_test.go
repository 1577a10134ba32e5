package mde

import (
	"context"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/Azure/azure-sdk-for-go/sdk/azidentity"
)

// TestRefusalSaysWhatToDo: a refusal of the login host names what the
// code it gave points at, and what to do about it. Every refusal said
// "refused the credentials": an unknown tenant id, an application not in
// the tenant or a Conditional Access policy sent the operator to rotate
// a secret that works.
func TestRefusalSaysWhatToDo(t *testing.T) {
	t.Parallel()
	const guid = "4b5c6d7e-0000-4000-8000-123456789abc"
	tests := []struct {
		status int
		code   string
		want   []string // all of them in the text
		not    string   // not in the text
	}{
		{401, "7000215", []string{"client secret", "value"}, ""},
		{401, "7000222", []string{"client secret", "expired", "new"}, ""},
		{400, "90002", []string{"tenantId", "cloud"}, "refused the credentials"},
		{400, "700016", []string{"clientId", "tenant"}, "refused the credentials"},
		{400, "53003", []string{"Conditional Access"}, "refused the credentials"},
		{400, "700024", []string{"clock"}, ""},
		{400, "50126", []string{"clientId"}, ""},
		{400, "12345678", []string{"tenantId", "clientId", "secret", "certificate", "federated token"}, ""},
		{400, "70021", []string{"federated credential", "issuer", "subject"}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.code, func(t *testing.T) {
			t.Parallel()
			body := `{"error":"invalid_client","error_codes":[` + tt.code + `],"error_description":"AADSTS` + tt.code + `: text","correlation_id":"` + guid + `"}`
			resp := &http.Response{StatusCode: tt.status, Status: http.StatusText(tt.status),
				Body: io.NopCloser(strings.NewReader(body))}
			err := classifyTokenError(context.Background(), "login.microsoftonline.us", false, &azidentity.AuthenticationFailedError{RawResponse: resp})
			te := checkTokenErrorText(t, err, "text")
			if !te.Final {
				t.Fatalf("AADSTS%s not final", tt.code)
			}
			msg := err.Error()
			for _, w := range append(tt.want, "AADSTS"+tt.code, guid) {
				if !strings.Contains(msg, w) {
					t.Errorf("%q does not say %q", msg, w)
				}
			}
			if tt.not != "" && strings.Contains(msg, tt.not) {
				t.Errorf("%q says %q", msg, tt.not)
			}
		})
	}
}

// A managed identity refused is not told to check a secret or a
// certificate, which it has none of.
func TestManagedIdentityRefusalSaysWhatToDo(t *testing.T) {
	t.Parallel()
	resp := &http.Response{StatusCode: http.StatusBadRequest, Status: "Bad Request",
		Body: io.NopCloser(strings.NewReader(`{"error":"invalid_request","error_description":"Identity not found"}`))}
	err := classifyTokenError(context.Background(), "", true, &azidentity.AuthenticationFailedError{RawResponse: resp})
	msg := checkTokenErrorText(t, err, "Identity not found").Error()
	if !strings.Contains(msg, "assigned") || strings.Contains(msg, "secret") || strings.Contains(msg, "certificate") {
		t.Errorf("%q, want it to say to check the identity is assigned to the host, and nothing of a secret or certificate", msg)
	}
}
