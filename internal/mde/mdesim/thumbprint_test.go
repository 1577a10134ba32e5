package mdesim_test

import (
	"crypto/sha1"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"net/url"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/google/uuid"
	"github.com/jonboulle/clockwork"

	"github.com/contoso-secops/mde-offboard/internal/mde/mdesim"
)

// TestClientAssertionNamesItsCertificate: Entra ID finds the key of a
// certificate assertion by the thumbprint in its header (x5t, or
// x5t#S256), among the application's certificates. An assertion that
// names none is refused with AADSTS700027, however well it is signed;
// one naming the certificate by either thumbprint is accepted.
func TestClientAssertionNamesItsCertificate(t *testing.T) {
	s := newSim(t, mdesim.Options{Clock: clockwork.NewRealClock()})
	cert, key := selfSignedRSA(t)
	s.AddTenant(mdesim.Tenant{TenantID: tenantA, ClientID: clientA, Certificate: cert})
	endpoint := s.base + "/" + tenantA + "/oauth2/v2.0/token"
	sha1Thumb, sha256Thumb := sha1.Sum(cert.Raw), sha256.Sum256(cert.Raw)
	tests := []struct {
		name     string
		header   map[string]string
		wantCode int // 0: success
	}{
		{"no thumbprint", nil, 700027},
		{"x5t", map[string]string{"x5t": base64.RawURLEncoding.EncodeToString(sha1Thumb[:])}, 0},
		{"x5t#S256", map[string]string{"x5t#S256": base64.RawURLEncoding.EncodeToString(sha256Thumb[:])}, 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			now := time.Now()
			tok := jwt.NewWithClaims(jwt.SigningMethodPS256, jwt.MapClaims{"aud": endpoint, "iss": clientA, "sub": clientA,
				"jti": uuid.NewString(), "nbf": now.Unix(), "exp": now.Add(10 * time.Minute).Unix()})
			for k, v := range tc.header {
				tok.Header[k] = v
			}
			assertion, err := tok.SignedString(key)
			if err != nil {
				t.Fatal(err)
			}
			r := s.tokenRequest(t, tenantA, url.Values{
				"grant_type":            {"client_credentials"},
				"client_id":             {clientA},
				"scope":                 {mdesim.ScopeSecurityCenter},
				"client_assertion_type": {"urn:ietf:params:oauth:client-assertion-type:jwt-bearer"},
				"client_assertion":      {assertion},
			})
			if tc.wantCode == 0 {
				if r.status != http.StatusOK {
					t.Errorf("status %d: %s", r.status, r.body)
				}
				return
			}
			var e struct {
				Error string `json:"error"`
				Codes []int  `json:"error_codes"`
			}
			_ = json.Unmarshal(r.body, &e)
			if r.status != http.StatusUnauthorized || e.Error != "invalid_client" || len(e.Codes) != 1 || e.Codes[0] != tc.wantCode {
				t.Errorf("got %d %s, want 401 invalid_client %d", r.status, r.body, tc.wantCode)
			}
		})
	}
}
