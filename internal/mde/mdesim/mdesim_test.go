package mdesim_test

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/big"
	mrand "math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/cloud"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/Azure/azure-sdk-for-go/sdk/azidentity"
	"github.com/golang-jwt/jwt/v5"
	"github.com/google/uuid"
	"github.com/jonboulle/clockwork"
	"go.uber.org/goleak"

	"github.com/contoso-secops/mde-offboard/internal/mde/mdesim"
	"github.com/contoso-secops/mde-offboard/internal/testwait"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

const (
	tenantA = "11111111-1111-4111-8111-111111111111"
	tenantB = "22222222-2222-4222-8222-222222222222"
	clientA = "aaaaaaaa-aaaa-4aaa-8aaa-aaaaaaaaaaaa"
	clientB = "bbbbbbbb-bbbb-4bbb-8bbb-bbbbbbbbbbbb"
	secretA = "s3cret~A.value"
	secretB = "s3cret~B.value"

	winID   = "0123456789abcdef0123456789abcdef01234567"
	win2ID  = "1123456789abcdef0123456789abcdef01234567"
	linuxID = "2223456789abcdef0123456789abcdef01234567"
	macID   = "3333456789abcdef0123456789abcdef01234567"
)

var t0 = time.Date(2025, 3, 1, 12, 0, 0, 123456700, time.UTC)

// sim is a started simulator with a client trusting it.
type sim struct {
	*mdesim.Server
	base   string
	client *http.Client
	clock  *clockwork.FakeClock // nil with the real clock
}

func newSim(t *testing.T, opts mdesim.Options) *sim {
	t.Helper()
	var fc *clockwork.FakeClock
	if opts.Clock == nil {
		fc = clockwork.NewFakeClockAt(t0)
		opts.Clock = fc
	} else if c, ok := opts.Clock.(*clockwork.FakeClock); ok {
		fc = c
	}
	s := mdesim.New(opts)
	s.AddTenant(mdesim.Tenant{TenantID: tenantA, ClientID: clientA, ClientSecret: secretA})
	s.AddTenant(mdesim.Tenant{TenantID: tenantB, ClientID: clientB, ClientSecret: secretB})
	s.AddMachine(tenantA, mdesim.Machine{ID: winID, ComputerDNSName: "pc-0001.contoso.local", OSPlatform: "Windows11", LastSeen: t0.Add(-time.Hour)})
	s.AddMachine(tenantA, mdesim.Machine{ID: win2ID, ComputerDNSName: "pc-0002.contoso.local", OSPlatform: "WindowsServer2019", LastSeen: t0.Add(-time.Hour)})
	s.AddMachine(tenantA, mdesim.Machine{ID: linuxID, ComputerDNSName: "lnx-01.contoso.local", OSPlatform: "Linux"})
	s.AddMachine(tenantA, mdesim.Machine{ID: macID, ComputerDNSName: "mac-01.contoso.local", OSPlatform: "macOS"})
	base := s.StartTLS()
	tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: s.CertPool()}}
	t.Cleanup(func() {
		tr.CloseIdleConnections()
		s.Close()
	})
	return &sim{Server: s, base: base, client: &http.Client{Transport: tr}, clock: fc}
}

type response struct {
	status int
	header http.Header
	body   []byte
}

type apiError struct {
	Code    string `json:"code"`
	Message string `json:"message"`
	Target  string `json:"target"`
}

func (r response) apiError(t *testing.T) apiError {
	t.Helper()
	var e struct {
		Error *apiError `json:"error"`
	}
	if err := json.Unmarshal(r.body, &e); err != nil || e.Error == nil {
		t.Fatalf("status %d: body %s is not an API error: %v", r.status, r.body, err)
	}
	if ct := r.header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		t.Errorf("Content-Type = %q, want application/json", ct)
	}
	if _, err := uuid.Parse(e.Error.Target); err != nil {
		t.Errorf("error target %q is not a uuid", e.Error.Target)
	}
	return *e.Error
}

func (r response) object(t *testing.T) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(r.body, &m); err != nil {
		t.Fatalf("body %s: %v", r.body, err)
	}
	return m
}

func (s *sim) do(t *testing.T, method, path, token, contentType, body string) response {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, s.base+path, rd)
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	resp, err := s.client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return response{resp.StatusCode, resp.Header, b}
}

func (s *sim) tokenRequest(t *testing.T, tenantID string, form url.Values) response {
	t.Helper()
	resp, err := s.client.PostForm(s.base+"/"+tenantID+"/oauth2/v2.0/token", form)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return response{resp.StatusCode, resp.Header, b}
}

func (s *sim) token(t *testing.T, tenantID, clientID, secret string) string {
	t.Helper()
	r := s.tokenRequest(t, tenantID, url.Values{
		"grant_type":    {"client_credentials"},
		"client_id":     {clientID},
		"client_secret": {secret},
		"scope":         {mdesim.ScopeSecurityCenter},
	})
	if r.status != http.StatusOK {
		t.Fatalf("token: status %d: %s", r.status, r.body)
	}
	var tok struct {
		AccessToken string `json:"access_token"`
	}
	if err := json.Unmarshal(r.body, &tok); err != nil || tok.AccessToken == "" {
		t.Fatalf("token body %s: %v", r.body, err)
	}
	return tok.AccessToken
}

func (s *sim) offboard(t *testing.T, token, id, comment string) response {
	t.Helper()
	b, _ := json.Marshal(map[string]string{"Comment": comment})
	return s.do(t, http.MethodPost, "/api/machines/"+id+"/offboard", token, "application/json", string(b))
}

func clientOptions(s *sim) azcore.ClientOptions {
	return azcore.ClientOptions{
		Cloud:     cloud.Configuration{ActiveDirectoryAuthorityHost: s.base},
		Transport: s.client,
		Retry:     policy.RetryOptions{MaxRetries: -1},
	}
}

func TestClientSecretCredential(t *testing.T) {
	s := newSim(t, mdesim.Options{Clock: clockwork.NewRealClock()})
	ctx := context.Background()
	tests := []struct {
		name       string
		rotate     string // SetSecret before the attempt
		tenantID   string
		clientID   string
		secret     string
		wantStatus int    // 0: success
		wantCode   string // AADSTS code in the error
	}{
		{name: "ok", tenantID: tenantA, clientID: clientA, secret: secretA},
		{name: "bad secret", tenantID: tenantA, clientID: clientA, secret: "wrong-secret", wantStatus: 401, wantCode: "AADSTS7000215"},
		{name: "other tenant's secret", tenantID: tenantA, clientID: clientA, secret: secretB, wantStatus: 401, wantCode: "AADSTS7000215"},
		{name: "unknown client", tenantID: tenantA, clientID: clientB, secret: secretB, wantStatus: 400, wantCode: "AADSTS700016"},
		{name: "old secret after rotation", rotate: "rotated-secret", tenantID: tenantB, clientID: clientB, secret: secretB, wantStatus: 401, wantCode: "AADSTS7000215"},
		{name: "new secret after rotation", tenantID: tenantB, clientID: clientB, secret: "rotated-secret"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if tc.rotate != "" {
				s.SetSecret(tc.tenantID, tc.rotate)
			}
			before := s.TokenRequests(tc.tenantID)
			cred, err := azidentity.NewClientSecretCredential(tc.tenantID, tc.clientID, tc.secret, &azidentity.ClientSecretCredentialOptions{
				ClientOptions:            clientOptions(s),
				DisableInstanceDiscovery: true,
			})
			if err != nil {
				t.Fatal(err)
			}
			tok, err := cred.GetToken(ctx, policy.TokenRequestOptions{Scopes: []string{mdesim.ScopeSecurityCenter}})
			if got := s.TokenRequests(tc.tenantID) - before; got != 1 {
				t.Errorf("token requests = %d, want 1", got)
			}
			if tc.wantStatus == 0 {
				if err != nil {
					t.Fatalf("GetToken: %v", err)
				}
				if d := time.Until(tok.ExpiresOn); d < 55*time.Minute || d > 61*time.Minute {
					t.Errorf("token expires in %v, want about 1h", d)
				}
				if r := s.do(t, http.MethodGet, "/api/machines", tok.Token, "", ""); r.status != http.StatusOK {
					t.Errorf("GET /api/machines with the token: %d %s", r.status, r.body)
				}
				return
			}
			var afe *azidentity.AuthenticationFailedError
			if !errors.As(err, &afe) {
				t.Fatalf("GetToken error = %v, want AuthenticationFailedError", err)
			}
			if afe.RawResponse == nil || afe.RawResponse.StatusCode != tc.wantStatus {
				t.Errorf("status = %v, want %d", afe.RawResponse, tc.wantStatus)
			}
			if msg := err.Error(); !strings.Contains(msg, tc.wantCode) {
				t.Errorf("error %q does not mention %s", msg, tc.wantCode)
			} else if strings.Contains(msg, tc.secret) {
				t.Errorf("error echoes the secret: %q", msg)
			}
		})
	}
}

func TestSecretRotationKeepsIssuedTokens(t *testing.T) {
	s := newSim(t, mdesim.Options{})
	tok := s.token(t, tenantA, clientA, secretA)
	s.SetSecret(tenantA, "next")
	if r := s.tokenRequest(t, tenantA, url.Values{"grant_type": {"client_credentials"}, "client_id": {clientA}, "client_secret": {secretA}, "scope": {mdesim.ScopeSecurityCenter}}); r.status != http.StatusUnauthorized {
		t.Errorf("old secret: status %d, want 401", r.status)
	}
	if r := s.do(t, http.MethodGet, "/api/machines", tok, "", ""); r.status != http.StatusOK {
		t.Errorf("token issued before rotation: status %d, want 200", r.status)
	}
	s.AddSecret(tenantA, "second")
	s.token(t, tenantA, clientA, "next")
	s.token(t, tenantA, clientA, "second")
}

// selfSignedRSA returns a certificate and its RSA key.
func selfSignedRSA(t *testing.T) (*x509.Certificate, *rsa.PrivateKey) {
	t.Helper()
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()),
		Subject:      pkix.Name{CommonName: "mde-offboard-test"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return cert, key
}

func TestClientCertificateCredential(t *testing.T) {
	s := newSim(t, mdesim.Options{Clock: clockwork.NewRealClock()})
	cert, key := selfSignedRSA(t)
	other, otherKey := selfSignedRSA(t)
	s.AddTenant(mdesim.Tenant{TenantID: tenantA, ClientID: clientA, Certificate: cert})
	tests := []struct {
		name     string
		cert     *x509.Certificate
		key      *rsa.PrivateKey
		wantCode string
	}{
		{name: "registered certificate", cert: cert, key: key},
		{name: "unregistered certificate", cert: other, key: otherKey, wantCode: "AADSTS700027"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cred, err := azidentity.NewClientCertificateCredential(tenantA, clientA, []*x509.Certificate{tc.cert}, tc.key,
				&azidentity.ClientCertificateCredentialOptions{ClientOptions: clientOptions(s), DisableInstanceDiscovery: true})
			if err != nil {
				t.Fatal(err)
			}
			tok, err := cred.GetToken(context.Background(), policy.TokenRequestOptions{Scopes: []string{mdesim.ScopeWindowsATP}})
			if tc.wantCode == "" {
				if err != nil {
					t.Fatalf("GetToken: %v", err)
				}
				if r := s.do(t, http.MethodGet, "/api/machines/"+winID, tok.Token, "", ""); r.status != http.StatusOK {
					t.Errorf("GET machine with the token: %d %s", r.status, r.body)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.wantCode) {
				t.Errorf("GetToken error = %v, want %s", err, tc.wantCode)
			}
		})
	}
}

func TestClientAssertion(t *testing.T) {
	s := newSim(t, mdesim.Options{Clock: clockwork.NewRealClock()})
	cert, key := selfSignedRSA(t)
	_, otherKey := selfSignedRSA(t)
	s.AddTenant(mdesim.Tenant{TenantID: tenantA, ClientID: clientA, Certificate: cert})
	endpoint := s.base + "/" + tenantA + "/oauth2/v2.0/token"
	thumb := sha256.Sum256(cert.Raw)
	now := time.Now()
	claims := func(mod func(jwt.MapClaims)) jwt.MapClaims {
		c := jwt.MapClaims{"aud": endpoint, "iss": clientA, "sub": clientA, "jti": uuid.NewString(),
			"nbf": now.Unix(), "exp": now.Add(10 * time.Minute).Unix()}
		if mod != nil {
			mod(c)
		}
		return c
	}
	tests := []struct {
		name     string
		method   jwt.SigningMethod
		key      *rsa.PrivateKey
		claims   jwt.MapClaims
		wantCode int // 0: success
	}{
		{"PS256", jwt.SigningMethodPS256, key, claims(nil), 0},
		{"RS256", jwt.SigningMethodRS256, key, claims(nil), 0},
		{"audience list", jwt.SigningMethodRS256, key, claims(func(c jwt.MapClaims) { c["aud"] = []string{"x", endpoint} }), 0},
		{"signed by another key", jwt.SigningMethodPS256, otherKey, claims(nil), 700027},
		{"HS256", jwt.SigningMethodHS256, nil, claims(nil), 700027},
		{"wrong issuer", jwt.SigningMethodPS256, key, claims(func(c jwt.MapClaims) { c["iss"] = clientB }), 700021},
		{"wrong subject", jwt.SigningMethodPS256, key, claims(func(c jwt.MapClaims) { c["sub"] = clientB }), 700021},
		{"wrong audience", jwt.SigningMethodPS256, key, claims(func(c jwt.MapClaims) {
			c["aud"] = "https://login.microsoftonline.com/" + tenantA + "/oauth2/v2.0/token"
		}), 700023},
		{"expired", jwt.SigningMethodPS256, key, claims(func(c jwt.MapClaims) { c["exp"] = now.Add(-10 * time.Minute).Unix() }), 700024},
		{"no expiry", jwt.SigningMethodPS256, key, claims(func(c jwt.MapClaims) { delete(c, "exp") }), 700024},
		{"not yet valid", jwt.SigningMethodPS256, key, claims(func(c jwt.MapClaims) { c["nbf"] = now.Add(time.Hour).Unix() }), 700024},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tok := jwt.NewWithClaims(tc.method, tc.claims)
			tok.Header["x5t#S256"] = base64.StdEncoding.EncodeToString(thumb[:])
			var signKey any = tc.key
			if tc.method == jwt.SigningMethodHS256 {
				signKey = []byte("shared")
			}
			assertion, err := tok.SignedString(signKey)
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
				if r.status != 200 {
					t.Errorf("status %d: %s", r.status, r.body)
				}
				return
			}
			var e struct {
				Error string `json:"error"`
				Codes []int  `json:"error_codes"`
			}
			json.Unmarshal(r.body, &e)
			if r.status != 401 || e.Error != "invalid_client" || len(e.Codes) != 1 || e.Codes[0] != tc.wantCode {
				t.Errorf("got %d %s, want 401 invalid_client %d", r.status, r.body, tc.wantCode)
			}
		})
	}
}

// TestTokenOfAnotherResource: the token endpoint issues a token for the
// .default scope of any resource the tenant has, as Entra ID does, with
// that resource as its audience; the API answers 401 to a token whose
// audience is not the API.
func TestTokenOfAnotherResource(t *testing.T) {
	s := newSim(t, mdesim.Options{})
	for _, scope := range []string{"https://graph.microsoft.com/.default", "https://management.azure.com/.default", "HTTPS://GRAPH.MICROSOFT.COM/.default"} {
		r := s.tokenRequest(t, tenantA, url.Values{"grant_type": {"client_credentials"}, "client_id": {clientA}, "client_secret": {secretA}, "scope": {scope}})
		if r.status != http.StatusOK {
			t.Fatalf("%s: status %d: %s", scope, r.status, r.body)
		}
		var tok struct {
			AccessToken string `json:"access_token"`
		}
		if err := json.Unmarshal(r.body, &tok); err != nil || tok.AccessToken == "" {
			t.Fatalf("%s: token body %s: %v", scope, r.body, err)
		}
		got := s.offboard(t, tok.AccessToken, winID, "c")
		if e := got.apiError(t); got.status != http.StatusUnauthorized || e.Code != "Unauthorized" {
			t.Errorf("%s: offboard with its token = %d %+v, want 401 Unauthorized", scope, got.status, e)
		}
	}
	if n := len(s.Actions(tenantA)); n != 0 {
		t.Errorf("%d actions made with tokens of other resources", n)
	}
	if got := s.offboard(t, s.token(t, tenantA, clientA, secretA), winID, "c"); got.status/100 != 2 {
		t.Errorf("offboard with the API's token = %d %s", got.status, got.body)
	}
}

func TestTokenEndpointErrors(t *testing.T) {
	s := newSim(t, mdesim.Options{})
	good := func() url.Values {
		return url.Values{"grant_type": {"client_credentials"}, "client_id": {clientA}, "client_secret": {secretA}, "scope": {mdesim.ScopeSecurityCenter}}
	}
	with := func(k, v string) url.Values {
		f := good()
		if v == "" {
			f.Del(k)
		} else {
			f.Set(k, v)
		}
		return f
	}
	tests := []struct {
		name       string
		tenantID   string
		form       url.Values
		wantStatus int
		wantError  string
		wantCode   int
	}{
		{"unknown tenant", "99999999-9999-4999-8999-999999999999", good(), 400, "invalid_tenant", 90002},
		{"missing grant_type", tenantA, with("grant_type", ""), 400, "invalid_request", 900144},
		{"password grant", tenantA, with("grant_type", "password"), 400, "unsupported_grant_type", 70003},
		{"unknown client", tenantA, with("client_id", clientB), 400, "unauthorized_client", 700016},
		{"unknown resource", tenantA, with("scope", "https://unknown.contoso.example/.default"), 400, "invalid_resource", 500011},
		{"scope without /.default", tenantA, with("scope", "https://graph.microsoft.com/User.Read.All"), 400, "invalid_scope", 70011},
		{"a bare resource", tenantA, with("scope", "https://api.securitycenter.microsoft.com"), 400, "invalid_scope", 70011},
		{"two resources", tenantA, with("scope", mdesim.ScopeSecurityCenter+" "+mdesim.ScopeWindowsATP), 400, "invalid_scope", 70011},
		{"no credential", tenantA, with("client_secret", ""), 401, "invalid_client", 7000216},
		{"bad secret", tenantA, with("client_secret", "nope-nope"), 401, "invalid_client", 7000215},
		{"garbage assertion", tenantA, func() url.Values {
			f := with("client_secret", "")
			f.Set("client_assertion_type", "urn:ietf:params:oauth:client-assertion-type:jwt-bearer")
			f.Set("client_assertion", "not.a.jwt")
			return f
		}(), 401, "invalid_client", 700027},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := s.tokenRequest(t, tc.tenantID, tc.form)
			if r.status != tc.wantStatus {
				t.Errorf("status = %d, want %d", r.status, tc.wantStatus)
			}
			var e struct {
				Error         string `json:"error"`
				Description   string `json:"error_description"`
				Codes         []int  `json:"error_codes"`
				Timestamp     string `json:"timestamp"`
				TraceID       string `json:"trace_id"`
				CorrelationID string `json:"correlation_id"`
			}
			if err := json.Unmarshal(r.body, &e); err != nil {
				t.Fatalf("body %s: %v", r.body, err)
			}
			if e.Error != tc.wantError || len(e.Codes) != 1 || e.Codes[0] != tc.wantCode {
				t.Errorf("error = %q %v, want %q [%d]", e.Error, e.Codes, tc.wantError, tc.wantCode)
			}
			if !strings.HasPrefix(e.Description, fmt.Sprintf("AADSTS%d: ", tc.wantCode)) {
				t.Errorf("description = %q", e.Description)
			}
			if e.Timestamp == "" || e.TraceID == "" || e.CorrelationID == "" {
				t.Errorf("missing timestamp, trace_id or correlation_id: %s", r.body)
			}
			if secret := tc.form.Get("client_secret"); secret != "" && strings.Contains(string(r.body), secret) {
				t.Errorf("body echoes the secret: %s", r.body)
			}
		})
	}
	t.Run("GET", func(t *testing.T) {
		resp, err := s.client.Get(s.base + "/" + tenantA + "/oauth2/v2.0/token")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode < 400 {
			t.Errorf("status = %d, want an error", resp.StatusCode)
		}
	})
}

func TestOpenIDConfiguration(t *testing.T) {
	s := newSim(t, mdesim.Options{})
	r := s.do(t, http.MethodGet, "/"+tenantA+"/v2.0/.well-known/openid-configuration", "", "", "")
	if r.status != http.StatusOK {
		t.Fatalf("status %d: %s", r.status, r.body)
	}
	m := r.object(t)
	want := map[string]string{
		"token_endpoint":         s.base + "/" + tenantA + "/oauth2/v2.0/token",
		"authorization_endpoint": s.base + "/" + tenantA + "/oauth2/v2.0/authorize",
		"issuer":                 s.base + "/" + tenantA + "/v2.0",
	}
	for k, v := range want {
		if m[k] != v {
			t.Errorf("%s = %v, want %s", k, m[k], v)
		}
	}
	r = s.do(t, http.MethodGet, "/99999999-9999-4999-8999-999999999999/v2.0/.well-known/openid-configuration", "", "", "")
	if r.status != http.StatusBadRequest || r.object(t)["error"] != "invalid_tenant" {
		t.Errorf("unknown tenant: %d %s", r.status, r.body)
	}
}

func TestOffboardCreated(t *testing.T) {
	s := newSim(t, mdesim.Options{})
	tok := s.token(t, tenantA, clientA, secretA)
	r := s.offboard(t, tok, winID, "Retired by ticket CHG-1")
	if r.status != http.StatusCreated {
		t.Fatalf("status %d: %s", r.status, r.body)
	}
	if ct := r.header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		t.Errorf("Content-Type = %q", ct)
	}
	m := r.object(t)
	id, _ := m["id"].(string)
	if _, err := uuid.Parse(id); err != nil {
		t.Errorf("id %q is not a uuid", id)
	}
	wantTime := t0.Format("2006-01-02T15:04:05.0000000Z")
	want := map[string]any{
		"@odata.context":          "https://api.securitycenter.microsoft.com/api/$metadata#MachineActions/$entity",
		"type":                    "Offboard",
		"title":                   "Offboard machine pc-0001.contoso.local",
		"requestor":               clientA,
		"requestorComment":        "Retired by ticket CHG-1",
		"status":                  "Pending",
		"machineId":               winID,
		"computerDnsName":         "pc-0001.contoso.local",
		"creationDateTimeUtc":     wantTime,
		"lastUpdateDateTimeUtc":   wantTime,
		"cancellationRequestor":   nil,
		"cancellationComment":     nil,
		"cancellationDateTimeUtc": nil,
		"errorHResult":            float64(0),
		"scope":                   nil,
		"externalId":              nil,
		"requestSource":           "PublicApi",
		"relatedFileInfo":         nil,
		"troubleshootInfo":        nil,
	}
	for k, v := range want {
		got, ok := m[k]
		if !ok {
			t.Errorf("field %s missing", k)
		} else if got != v {
			t.Errorf("%s = %#v, want %#v", k, got, v)
		}
	}
	if c, ok := m["commands"].([]any); !ok || len(c) != 0 {
		t.Errorf("commands = %#v, want []", m["commands"])
	}
	if _, err := time.Parse(time.RFC3339Nano, m["creationDateTimeUtc"].(string)); err != nil {
		t.Errorf("creationDateTimeUtc: %v", err)
	}

	var a mdesim.MachineAction
	if err := json.Unmarshal(r.body, &a); err != nil {
		t.Fatalf("decode into MachineAction: %v", err)
	}
	if !a.CreationDateTimeUTC.Equal(t0) {
		t.Errorf("decoded creation time = %v, want %v", a.CreationDateTimeUTC, t0)
	}

	acts := s.Actions(tenantA)
	if len(acts) != 1 || acts[0].ID != id || acts[0].MachineID != winID || acts[0].Status != mdesim.StatusPending || !acts[0].CreationDateTimeUTC.Equal(t0) {
		t.Errorf("Actions = %+v", acts)
	}
	if len(s.Actions(tenantB)) != 0 {
		t.Errorf("tenant B sees tenant A's actions")
	}
	calls := s.Calls()
	last := calls[len(calls)-1]
	if last.API != mdesim.APIOffboard || last.Status != 201 || last.TenantID != tenantA || last.MachineID != winID || last.ActionID != id || !last.At.Equal(t0) {
		t.Errorf("call = %+v", last)
	}
}

// TestTimesAsTheServiceWritesThem: the service writes its date-times in
// UTC with up to seven fractional digits, trailing zeros left out, and no
// fraction at all on a whole second ("2021-01-25T07:27:36.052313Z",
// "2021-01-26T20:33:59.2Z" in the documentation's examples): a client
// that reads seven digits always would fail on them.
func TestTimesAsTheServiceWritesThem(t *testing.T) {
	s := newSim(t, mdesim.Options{})
	const id = "7777756789abcdef0123456789abcdef01234567"
	whole := time.Date(2025, 2, 1, 10, 0, 0, 0, time.UTC)
	s.AddMachine(tenantA, mdesim.Machine{ID: id, ComputerDNSName: "times.contoso.local",
		LastSeen: whole.Add(52313 * time.Microsecond), FirstSeen: whole})
	tok := s.token(t, tenantA, clientA, secretA)
	m := s.do(t, http.MethodGet, "/api/machines/"+id, tok, "", "").object(t)
	if m["firstSeen"] != "2025-02-01T10:00:00Z" || m["lastSeen"] != "2025-02-01T10:00:00.052313Z" {
		t.Errorf("firstSeen %v, lastSeen %v; want 2025-02-01T10:00:00Z and 2025-02-01T10:00:00.052313Z", m["firstSeen"], m["lastSeen"])
	}
	s.clock.Advance(time.Second - time.Duration(t0.Nanosecond()) + 200*time.Millisecond) // 12:00:01.2
	a := s.offboard(t, tok, id, "x").object(t)
	if a["creationDateTimeUtc"] != "2025-03-01T12:00:01.2Z" || a["lastUpdateDateTimeUtc"] != "2025-03-01T12:00:01.2Z" {
		t.Errorf("creationDateTimeUtc %v, lastUpdateDateTimeUtc %v; want 2025-03-01T12:00:01.2Z", a["creationDateTimeUtc"], a["lastUpdateDateTimeUtc"])
	}
}

func TestNullActionMachineFields(t *testing.T) {
	s := newSim(t, mdesim.Options{NullActionMachineFields: true})
	tok := s.token(t, tenantA, clientA, secretA)
	m := s.offboard(t, tok, winID, "x").object(t)
	if v, ok := m["machineId"]; !ok || v != nil {
		t.Errorf("machineId = %#v, want null", v)
	}
	if v, ok := m["computerDnsName"]; !ok || v != nil {
		t.Errorf("computerDnsName = %#v, want null", v)
	}
	g := s.do(t, http.MethodGet, "/api/machineactions/"+m["id"].(string), tok, "", "").object(t)
	if g["machineId"] != winID {
		t.Errorf("GET machineId = %#v", g["machineId"])
	}
}

func TestAPIErrors(t *testing.T) {
	s := newSim(t, mdesim.Options{})
	s.AddTenant(mdesim.Tenant{TenantID: tenantB, ClientID: clientB, ClientSecret: secretB, Roles: []string{mdesim.RoleReadAll}})
	tokA := s.token(t, tenantA, clientA, secretA)
	tokReadOnly := s.token(t, tenantB, clientB, secretB)
	s.AddTenant(mdesim.Tenant{TenantID: "33333333-3333-4333-8333-333333333333", ClientID: clientA, ClientSecret: secretA, Roles: []string{mdesim.RoleOffboard}})
	tokOffboardOnly := s.token(t, "33333333-3333-4333-8333-333333333333", clientA, secretA)
	expiring := s.token(t, tenantA, clientA, secretA)

	const ctJSON = "application/json"
	offboardPath := "/api/machines/" + winID + "/offboard"
	tests := []struct {
		name       string
		method     string
		path       string
		token      string
		ctype      string
		body       string
		wantStatus int
		wantCode   string
		wantMsg    string
	}{
		{"no token", "POST", offboardPath, "", ctJSON, `{"Comment":"x"}`, 401, "Unauthorized", ""},
		{"unknown token", "POST", offboardPath, "not-a-token", ctJSON, `{"Comment":"x"}`, 401, "Unauthorized", ""},
		{"no token on read", "GET", "/api/machines", "", "", "", 401, "Unauthorized", ""},
		{"missing offboard role", "POST", "/api/machines/x/offboard", tokReadOnly, ctJSON, `{"Comment":"x"}`, 403, "Forbidden", "Missing application roles. API required roles: Machine.Offboard"},
		{"missing read role on machines", "GET", "/api/machines", tokOffboardOnly, "", "", 403, "Forbidden", "Missing application roles. API required roles: Machine.Read.All"},
		{"missing read role on actions", "GET", "/api/machineactions", tokOffboardOnly, "", "", 403, "Forbidden", "Missing application roles. API required roles: Machine.Read.All"},
		{"no content type", "POST", offboardPath, tokA, "", `{"Comment":"x"}`, 400, "InvalidRequestBody", ""},
		{"text content type", "POST", offboardPath, tokA, "text/plain", `{"Comment":"x"}`, 400, "InvalidRequestBody", ""},
		{"not json", "POST", offboardPath, tokA, ctJSON, `Comment=x`, 400, "InvalidRequestBody", ""},
		{"empty body", "POST", offboardPath, tokA, ctJSON, ``, 400, "InvalidRequestBody", ""},
		{"json array", "POST", offboardPath, tokA, ctJSON, `["x"]`, 400, "InvalidRequestBody", ""},
		{"comment not a string", "POST", offboardPath, tokA, ctJSON, `{"Comment":5}`, 400, "InvalidRequestBody", ""},
		{"lower-case comment", "POST", offboardPath, tokA, ctJSON, `{"comment":"x"}`, 400, "MissingRequiredParameter", ""},
		{"empty comment", "POST", offboardPath, tokA, ctJSON, `{"Comment":""}`, 400, "MissingRequiredParameter", ""},
		{"null comment", "POST", offboardPath, tokA, ctJSON, `{"Comment":null}`, 400, "MissingRequiredParameter", ""},
		{"unknown machine", "POST", "/api/machines/ffffffffffffffffffffffffffffffffffffffff/offboard", tokA, ctJSON, `{"Comment":"x"}`, 404, "ResourceNotFound", ""},
		{"other tenant's machine", "GET", "/api/machines/" + winID, tokReadOnly, "", "", 404, "ResourceNotFound", ""},
		{"linux", "POST", "/api/machines/" + linuxID + "/offboard", tokA, ctJSON, `{"Comment":"x"}`, 400, "OsPlatformNotSupported", ""},
		{"macOS", "POST", "/api/machines/" + macID + "/offboard", tokA, ctJSON, `{"Comment":"x"}`, 400, "OsPlatformNotSupported", ""},
		{"GET offboard", "GET", offboardPath, tokA, "", "", 405, "MethodNotAllowed", ""},
		{"unknown machine read", "GET", "/api/machines/nosuch.contoso.local", tokA, "", "", 404, "ResourceNotFound", ""},
		{"unknown action", "GET", "/api/machineactions/" + uuid.NewString(), tokA, "", "", 404, "ResourceNotFound", ""},
		{"unknown route", "GET", "/api/alerts", tokA, "", "", 404, "NotFound", ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := s.do(t, tc.method, tc.path, tc.token, tc.ctype, tc.body)
			if r.status != tc.wantStatus {
				t.Fatalf("status = %d, want %d: %s", r.status, tc.wantStatus, r.body)
			}
			e := r.apiError(t)
			if e.Code != tc.wantCode {
				t.Errorf("code = %q, want %q", e.Code, tc.wantCode)
			}
			if tc.wantMsg != "" && e.Message != tc.wantMsg {
				t.Errorf("message = %q, want %q", e.Message, tc.wantMsg)
			}
		})
	}
	if n := len(s.Actions(tenantA)); n != 0 {
		t.Errorf("%d actions created by failing calls", n)
	}

	t.Run("expired token", func(t *testing.T) {
		s.clock.Advance(time.Hour)
		r := s.do(t, http.MethodGet, "/api/machines", expiring, "", "")
		if r.status != http.StatusUnauthorized || r.apiError(t).Code != "Unauthorized" {
			t.Errorf("status %d: %s", r.status, r.body)
		}
		fresh := s.token(t, tenantA, clientA, secretA)
		if r := s.do(t, http.MethodGet, "/api/machines", fresh, "", ""); r.status != http.StatusOK {
			t.Errorf("fresh token: status %d", r.status)
		}
	})
}

func TestDuplicateOffboard(t *testing.T) {
	tests := []struct {
		name             string
		returnsExisting  bool
		wantStatus       int
		wantCode         string
		wantActionsAfter int
	}{
		{"answers 400", false, 400, "ActiveRequestAlreadyExists", 1},
		{"returns existing", true, 201, "", 1},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := newSim(t, mdesim.Options{DuplicateReturnsExisting: tc.returnsExisting, ActionCompleteAfter: 30 * time.Minute})
			tok := s.token(t, tenantA, clientA, secretA)
			first := s.offboard(t, tok, winID, "first").object(t)
			s.clock.Advance(time.Minute)
			r := s.offboard(t, tok, winID, "second")
			if r.status != tc.wantStatus {
				t.Fatalf("status = %d, want %d: %s", r.status, tc.wantStatus, r.body)
			}
			if tc.wantCode != "" {
				if e := r.apiError(t); e.Code != tc.wantCode {
					t.Errorf("code = %q, want %q", e.Code, tc.wantCode)
				}
			} else {
				m := r.object(t)
				if m["id"] != first["id"] || m["requestorComment"] != "first" || m["status"] != "Pending" {
					t.Errorf("second answer = %v, want the first action", m)
				}
				if c := s.Calls(); c[len(c)-1].ActionID != first["id"] {
					t.Errorf("call ActionID = %q", c[len(c)-1].ActionID)
				}
			}
			if n := len(s.Actions(tenantA)); n != tc.wantActionsAfter {
				t.Errorf("actions = %d, want %d", n, tc.wantActionsAfter)
			}
			// Another machine is not affected.
			if r := s.offboard(t, tok, win2ID, "other"); r.status != 201 {
				t.Errorf("other machine: %d", r.status)
			}
			// Once the first action has finished, a new request is accepted.
			s.clock.Advance(30 * time.Minute)
			r = s.offboard(t, tok, winID, "third")
			if r.status != 201 || r.object(t)["id"] == first["id"] {
				t.Errorf("after completion: %d %s", r.status, r.body)
			}
		})
	}
}

func TestActionProgress(t *testing.T) {
	tests := []struct {
		name          string
		completeAfter time.Duration
		advance       time.Duration
		wantStatus    string
	}{
		{"pending before completion", 10 * time.Minute, 10*time.Minute - time.Nanosecond, "Pending"},
		{"succeeded at completion", 10 * time.Minute, 10 * time.Minute, "Succeeded"},
		{"pending forever", 0, 30 * 24 * time.Hour, "Pending"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := newSim(t, mdesim.Options{ActionCompleteAfter: tc.completeAfter})
			tok := s.token(t, tenantA, clientA, secretA)
			s.clock.Advance(5 * time.Second)
			created := s.clock.Now()
			id := s.offboard(t, tok, winID, "x").object(t)["id"].(string)
			s.clock.Advance(tc.advance)
			tok = s.token(t, tenantA, clientA, secretA)

			one := s.do(t, http.MethodGet, "/api/machineactions/"+id, tok, "", "")
			if one.status != 200 {
				t.Fatalf("GET action: %d %s", one.status, one.body)
			}
			var a mdesim.MachineAction
			if err := json.Unmarshal(one.body, &a); err != nil {
				t.Fatal(err)
			}
			if a.Status != tc.wantStatus {
				t.Errorf("status = %q, want %q", a.Status, tc.wantStatus)
			}
			wantUpdate := created
			if tc.wantStatus == "Succeeded" {
				wantUpdate = created.Add(tc.completeAfter)
			}
			if !a.LastUpdateDateTimeUTC.Equal(wantUpdate) {
				t.Errorf("lastUpdateDateTimeUtc = %v, want %v", a.LastUpdateDateTimeUTC, wantUpdate)
			}
			list := s.do(t, http.MethodGet, "/api/machineactions?$filter="+url.QueryEscape("status eq '"+tc.wantStatus+"'"), tok, "", "")
			var l struct {
				Value []mdesim.MachineAction `json:"value"`
			}
			if err := json.Unmarshal(list.body, &l); err != nil || len(l.Value) != 1 || l.Value[0].ID != id {
				t.Errorf("list by status: %s (%v)", list.body, err)
			}
			if got := s.Actions(tenantA)[0].Status; got != tc.wantStatus {
				t.Errorf("Actions status = %q", got)
			}
		})
	}
}

func TestSetActionStatus(t *testing.T) {
	s := newSim(t, mdesim.Options{})
	tok := s.token(t, tenantA, clientA, secretA)
	id := s.offboard(t, tok, winID, "x").object(t)["id"].(string)
	if !s.SetActionStatus(tenantA, id, mdesim.StatusFailed) {
		t.Fatal("SetActionStatus: action not found")
	}
	if s.SetActionStatus(tenantB, id, mdesim.StatusFailed) {
		t.Error("SetActionStatus found another tenant's action")
	}
	if r := s.offboard(t, tok, winID, "retry"); r.status != 201 {
		t.Errorf("offboard after Failed: %d %s", r.status, r.body)
	}
}

// TestAnswerOtherAction: a read of an action answers another while the
// fault lasts: the tenant's other action, or the one asked for under
// another id when it has no other; then the action asked for again.
func TestAnswerOtherAction(t *testing.T) {
	s := newSim(t, mdesim.Options{})
	tok := s.token(t, tenantA, clientA, secretA)
	first := s.offboard(t, tok, winID, "x").object(t)["id"].(string)
	read := func(id string) map[string]any {
		t.Helper()
		r := s.do(t, http.MethodGet, "/api/machineactions/"+id, tok, "", "")
		if r.status != http.StatusOK {
			t.Fatalf("read %s: %d %s", id, r.status, r.body)
		}
		return r.object(t)
	}
	s.AnswerOtherAction(strings.ToUpper(tenantA), 1)
	if got := read(first); got["id"] == first || got["machineId"] != winID {
		t.Errorf("alone, read as %v %v: want another id, the same device", got["id"], got["machineId"])
	}
	if got := read(first); got["id"] != first {
		t.Errorf("after the fault, read as %v", got["id"])
	}
	second := s.offboard(t, tok, win2ID, "x").object(t)["id"].(string)
	s.AnswerOtherAction(tenantA, 2)
	if got := read(first); got["id"] != second || got["machineId"] != win2ID {
		t.Errorf("read as %v of %v, want the other device's action %s", got["id"], got["machineId"], second)
	}
	if got := read(second); got["id"] != first {
		t.Errorf("the other action read as %v, want %s", got["id"], first)
	}
	if got := read(second); got["id"] != second {
		t.Errorf("after the fault, read as %v", got["id"])
	}
	calls := s.Calls()
	if mixed := calls[len(calls)-2]; mixed.ActionID != second {
		t.Errorf("the call answered with another action records %s, want the one asked for", mixed.ActionID)
	}
}

// listIDs GETs path and returns the ids of the value array.
func listIDs(t *testing.T, s *sim, tok, path string) (int, []string, response) {
	t.Helper()
	r := s.do(t, http.MethodGet, path, tok, "", "")
	if r.status != 200 {
		return r.status, nil, r
	}
	var l struct {
		Context string `json:"@odata.context"`
		Value   []struct {
			ID string `json:"id"`
		} `json:"value"`
	}
	if err := json.Unmarshal(r.body, &l); err != nil {
		t.Fatalf("%s: %v", r.body, err)
	}
	if !strings.HasPrefix(l.Context, "https://api.securitycenter.microsoft.com/api/$metadata#") {
		t.Errorf("@odata.context = %q", l.Context)
	}
	ids := []string{}
	for _, v := range l.Value {
		ids = append(ids, v.ID)
	}
	return r.status, ids, r
}

func filterQuery(f string) string { return "$filter=" + url.QueryEscape(f) }

func TestMachineActionsList(t *testing.T) {
	s := newSim(t, mdesim.Options{})
	tok := s.token(t, tenantA, clientA, secretA)
	var ids []string // in creation order
	for _, m := range []string{winID, win2ID} {
		ids = append(ids, s.offboard(t, tok, m, "x").object(t)["id"].(string))
		s.clock.Advance(time.Second)
	}
	s.SetActionStatus(tenantA, ids[0], mdesim.StatusSucceeded)
	ids = append(ids, s.offboard(t, tok, winID, "again").object(t)["id"].(string))
	// Tenant B's action is never visible to tenant A.
	s.AddMachine(tenantB, mdesim.Machine{ID: winID, ComputerDNSName: "pc-0001.fabrikam.local"})
	tokB := s.token(t, tenantB, clientB, secretB)
	s.offboard(t, tokB, winID, "b")

	tests := []struct {
		name    string
		query   string
		wantIDs []string
		wantErr string
	}{
		{"all, newest first", "", []string{ids[2], ids[1], ids[0]}, ""},
		{"machine and type", filterQuery("machineId eq '" + winID + "' and type eq 'Offboard'"), []string{ids[2], ids[0]}, ""},
		{"machine id upper case", filterQuery("machineId eq '" + strings.ToUpper(winID) + "'"), []string{ids[2], ids[0]}, ""},
		{"status", filterQuery("status eq 'Pending'"), []string{ids[2], ids[1]}, ""},
		{"status ne", filterQuery("status ne 'Pending'"), []string{ids[0]}, ""},
		{"id", filterQuery("id eq '" + ids[1] + "'"), []string{ids[1]}, ""},
		{"requestor", filterQuery("requestor eq '" + clientA + "' and machineId eq '" + win2ID + "'"), []string{ids[1]}, ""},
		{"or and parentheses", filterQuery("(machineId eq '" + win2ID + "' or status eq 'Succeeded') and type eq 'Offboard'"), []string{ids[1], ids[0]}, ""},
		{"creation time", filterQuery("creationDateTimeUtc ge " + t0.Add(time.Second).Format(time.RFC3339Nano)), []string{ids[2], ids[1]}, ""},
		{"escaped quote", filterQuery("machineId eq 'o''brien'"), []string{}, ""},
		{"top", "$top=1&" + filterQuery("type eq 'Offboard'"), []string{ids[2]}, ""},
		{"skip", "$skip=1&$top=1", []string{ids[1]}, ""},
		{"unterminated string", filterQuery("machineId eq 'abc"), nil, "ODataError"},
		{"unquoted value", filterQuery("machineId eq abc"), nil, "ODataError"},
		{"unknown field", filterQuery("computerName eq 'x'"), nil, "ODataError"},
		{"field name case", filterQuery("MachineId eq 'x'"), nil, "ODataError"},
		{"missing operator", filterQuery("machineId 'x'"), nil, "ODataError"},
		{"dangling and", filterQuery("machineId eq 'x' and"), nil, "ODataError"},
		{"lone quote inside", filterQuery("machineId eq 'o'brien'"), nil, "ODataError"},
		{"top too large", "$top=10001", nil, "ODataError"},
		{"top not a number", "$top=ten", nil, "ODataError"},
		{"unsupported option", "$orderby=creationDateTimeUtc", nil, "ODataError"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			path := "/api/machineactions"
			if tc.query != "" {
				path += "?" + tc.query
			}
			status, got, r := listIDs(t, s, tok, path)
			if tc.wantErr != "" {
				if status != 400 || r.apiError(t).Code != tc.wantErr {
					t.Errorf("status %d %s, want 400 %s", status, r.body, tc.wantErr)
				}
				return
			}
			if status != 200 {
				t.Fatalf("status %d: %s", status, r.body)
			}
			if strings.Join(got, ",") != strings.Join(tc.wantIDs, ",") {
				t.Errorf("ids = %v, want %v", got, tc.wantIDs)
			}
		})
	}
}

func TestMachines(t *testing.T) {
	s := newSim(t, mdesim.Options{})
	dupOld := "4444456789abcdef0123456789abcdef01234567"
	dupNew := "5555556789abcdef0123456789abcdef01234567"
	quoted := "6666656789abcdef0123456789abcdef01234567"
	s.AddMachine(tenantA, mdesim.Machine{ID: dupOld, ComputerDNSName: "reused.contoso.local", LastSeen: t0.Add(-48 * time.Hour)})
	s.AddMachine(tenantA, mdesim.Machine{ID: dupNew, ComputerDNSName: "REUSED.contoso.local", LastSeen: t0.Add(-time.Hour)})
	s.AddMachine(tenantA, mdesim.Machine{ID: quoted, ComputerDNSName: "o'neil-pc.contoso.local"})
	tok := s.token(t, tenantA, clientA, secretA)

	tests := []struct {
		name    string
		query   string
		wantIDs []string
		wantErr bool
	}{
		{"by name", filterQuery("computerDnsName eq 'pc-0001.contoso.local'"), []string{winID}, false},
		{"name is case-insensitive", filterQuery("computerDnsName eq 'PC-0001.Contoso.Local'"), []string{winID}, false},
		{"duplicate names", filterQuery("computerDnsName eq 'reused.contoso.local'"), []string{dupOld, dupNew}, false},
		{"quote escaping", filterQuery("computerDnsName eq 'o''neil-pc.contoso.local'"), []string{quoted}, false},
		{"startswith", filterQuery("startswith(computerDnsName,'pc-')"), []string{winID, win2ID}, false},
		{"startswith with quote", filterQuery("startswith(computerDnsName, 'O''NEIL')"), []string{quoted}, false},
		{"no match", filterQuery("computerDnsName eq 'nosuch'"), []string{}, false},
		{"by id", filterQuery("id eq '" + linuxID + "'"), []string{linuxID}, false},
		{"plus-encoded spaces", "$filter=computerDnsName+eq+'mac-01.contoso.local'", []string{macID}, false},
		{"startswith on time", filterQuery("startswith(lastSeen,'2')"), nil, true},
		// Not among the filterable properties the List machines API documents.
		{"firstSeen is not filterable", filterQuery("firstSeen lt 2030-01-01T00:00:00Z"), nil, true},
		{"unknown function", filterQuery("contains(computerDnsName,'pc')"), nil, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			status, got, r := listIDs(t, s, tok, "/api/machines?"+tc.query)
			if tc.wantErr {
				if status != 400 || r.apiError(t).Code != "ODataError" {
					t.Errorf("status %d %s, want 400 ODataError", status, r.body)
				}
				return
			}
			if status != 200 {
				t.Fatalf("status %d: %s", status, r.body)
			}
			if strings.Join(got, ",") != strings.Join(tc.wantIDs, ",") {
				t.Errorf("ids = %v, want %v", got, tc.wantIDs)
			}
		})
	}

	get := []struct {
		name, key, wantID string
	}{
		{"by id", winID, winID},
		{"by upper-case id", strings.ToUpper(winID), winID},
		{"by name", "pc-0002.contoso.local", win2ID},
		{"by duplicated name: most recently seen", "reused.contoso.local", dupNew},
		{"by name with quote", "o'neil-pc.contoso.local", quoted},
	}
	for _, tc := range get {
		t.Run("GET "+tc.name, func(t *testing.T) {
			r := s.do(t, http.MethodGet, "/api/machines/"+url.PathEscape(tc.key), tok, "", "")
			if r.status != 200 {
				t.Fatalf("status %d: %s", r.status, r.body)
			}
			m := r.object(t)
			if m["id"] != tc.wantID {
				t.Errorf("id = %v, want %s", m["id"], tc.wantID)
			}
			for _, f := range []string{"computerDnsName", "osPlatform", "healthStatus", "lastSeen", "firstSeen", "onboardingStatus"} {
				if v, _ := m[f].(string); v == "" {
					t.Errorf("%s missing: %s", f, r.body)
				}
			}
			if m["@odata.context"] != "https://api.securitycenter.microsoft.com/api/$metadata#Machines/$entity" {
				t.Errorf("@odata.context = %v", m["@odata.context"])
			}
			c := s.Calls()
			if last := c[len(c)-1]; last.MachineID != tc.wantID || last.API != mdesim.APIMachines {
				t.Errorf("call = %+v", last)
			}
		})
	}
}

// TestShuffleLists: with ShuffleLists, a page of devices comes in random
// order, as the actions do (the real order is not documented), while the
// pages keep one order between them, so that $skip still reads each
// device once.
func TestShuffleLists(t *testing.T) {
	s := newSim(t, mdesim.Options{ShuffleLists: true, Rand: mrand.New(mrand.NewPCG(1, 2))})
	for i := range 6 {
		s.AddMachine(tenantA, mdesim.Machine{ComputerDNSName: fmt.Sprintf("extra-%d.contoso.local", i)})
	}
	var inserted []string
	for _, m := range s.Machines(tenantA) {
		inserted = append(inserted, m.ID)
	}
	tok := s.token(t, tenantA, clientA, secretA)
	reordered := false
	for range 10 {
		_, got, r := listIDs(t, s, tok, "/api/machines")
		if len(got) != len(inserted) {
			t.Fatalf("%d devices listed, want %d: %s", len(got), len(inserted), r.body)
		}
		reordered = reordered || strings.Join(got, ",") != strings.Join(inserted, ",")
	}
	if !reordered {
		t.Error("ten lists of the devices all came in the order they were added")
	}
	seen := map[string]int{}
	for skip := 0; skip < len(inserted); skip += 4 {
		_, got, r := listIDs(t, s, tok, fmt.Sprintf("/api/machines?$top=4&$skip=%d", skip))
		if len(got) == 0 {
			t.Fatalf("page at %d: %s", skip, r.body)
		}
		for _, id := range got {
			seen[id]++
		}
	}
	for _, id := range inserted {
		if seen[id] != 1 {
			t.Errorf("device %s read %d times over the pages, want once", id, seen[id])
		}
	}
}

// TestMaxPageLinksTheRest: a list answer cut short by the server's page
// size (MaxPage), below what $top asks or with no $top, carries
// @odata.nextLink to the rest, on the same host, with the same filter;
// following the links reads every record once. An answer that holds all
// that was asked for has none.
func TestMaxPageLinksTheRest(t *testing.T) {
	s := newSim(t, mdesim.Options{MaxPage: 3, ShuffleLists: true})
	tok := s.token(t, tenantA, clientA, secretA)
	for i := range 7 {
		s.AddMachine(tenantA, mdesim.Machine{ComputerDNSName: fmt.Sprintf("paged-%d.contoso.local", i)})
	}
	all := s.Machines(tenantA)
	for _, m := range all[len(all)-7 : len(all)-2] {
		if r := s.offboard(t, tok, m.ID, "retired"); r.status != http.StatusCreated {
			t.Fatalf("offboard: %d %s", r.status, r.body)
		}
	}
	read := func(path string) (ids []string, next string) {
		t.Helper()
		_, ids, r := listIDs(t, s, tok, path)
		var l struct {
			Next string `json:"@odata.nextLink"`
		}
		if err := json.Unmarshal(r.body, &l); err != nil {
			t.Fatal(err)
		}
		return ids, l.Next
	}
	paged := strings.ReplaceAll(filterQuery("startswith(computerDnsName,'paged-')"), "+", "%20")
	for _, tc := range []struct {
		path  string
		pages []int // records per page
	}{
		{"/api/machines?" + paged, []int{3, 3, 1}},
		{"/api/machines?$top=5&" + paged, []int{3, 2}},
		{"/api/machines?$top=3&" + paged, []int{3}},
		{"/api/machines?$top=2&$skip=6&" + paged, []int{1}},
		{"/api/machines?$skip=1&" + paged, []int{3, 3}},
		{"/api/machineactions?" + strings.ReplaceAll(filterQuery("type eq 'Offboard'"), "+", "%20"), []int{3, 2}},
		{"/api/machineactions?$top=4", []int{3, 1}},
	} {
		t.Run(tc.path, func(t *testing.T) {
			seen := map[string]int{}
			path := tc.path
			for i, want := range tc.pages {
				ids, next := read(path)
				if len(ids) != want {
					t.Fatalf("page %d: %d records, want %d", i, len(ids), want)
				}
				for _, id := range ids {
					seen[id]++
				}
				if last := i == len(tc.pages)-1; last != (next == "") {
					t.Fatalf("page %d of %d: nextLink %q", i, len(tc.pages), next)
				}
				if next == "" {
					break
				}
				if !strings.HasPrefix(next, s.base+"/api/") {
					t.Fatalf("nextLink %q is not on the simulator's host %s", next, s.base)
				}
				path = strings.TrimPrefix(next, s.base)
			}
			for id, n := range seen {
				if n != 1 {
					t.Errorf("record %s read %d times", id, n)
				}
			}
		})
	}
}

// TestShuffleListsPagesActions: with ShuffleLists, a page of actions
// holds the actions it would hold unshuffled (the newest first, as the
// documentation's "$top=2" example reads the latest two), in random
// order, so that $skip reads each action once.
func TestShuffleListsPagesActions(t *testing.T) {
	s := newSim(t, mdesim.Options{ShuffleLists: true, Rand: mrand.New(mrand.NewPCG(1, 2))})
	tok := s.token(t, tenantA, clientA, secretA)
	var created []string // oldest first
	for i := range 6 {
		s.AddMachine(tenantA, mdesim.Machine{ComputerDNSName: fmt.Sprintf("paged-%d.contoso.local", i)})
		ms := s.Machines(tenantA)
		m := ms[len(ms)-1]
		r := s.offboard(t, tok, m.ID, "retired")
		if r.status != http.StatusCreated {
			t.Fatalf("offboard %s: %d %s", m.ID, r.status, r.body)
		}
		created = append(created, r.object(t)["id"].(string))
	}
	seen := map[string]int{}
	for skip := 0; skip < len(created); skip += 2 {
		_, got, r := listIDs(t, s, tok, fmt.Sprintf("/api/machineactions?$top=2&$skip=%d", skip))
		newest := len(created) - 1 - skip
		want := []string{created[newest], created[newest-1]}
		slices.Sort(got)
		slices.Sort(want)
		if !slices.Equal(got, want) {
			t.Errorf("page at %d holds %v, want the %d-th and %d-th newest %v: %s", skip, got, skip+1, skip+2, want, r.body)
		}
		for _, id := range got {
			seen[id]++
		}
	}
	for _, id := range created {
		if seen[id] != 1 {
			t.Errorf("action %s read %d times over the pages, want once", id, seen[id])
		}
	}
}

// TestEmptyMachineListNotFound: the List machines API documents "If
// there are no recent machines, you see 404 Not Found"; with the option
// set, a list with no device in it is answered so, a list with devices
// as always.
func TestEmptyMachineListNotFound(t *testing.T) {
	for _, notFound := range []bool{false, true} {
		t.Run(fmt.Sprintf("EmptyMachineListNotFound=%v", notFound), func(t *testing.T) {
			s := newSim(t, mdesim.Options{EmptyMachineListNotFound: notFound})
			tok := s.token(t, tenantA, clientA, secretA)
			for _, tc := range []struct {
				name, query string
				empty       bool
			}{
				{"a name no device has", filterQuery("computerDnsName eq 'nosuch.contoso.local'"), true},
				{"past the last page", "$skip=1000", true},
				{"a name a device has", filterQuery("computerDnsName eq 'pc-0001.contoso.local'"), false},
			} {
				status, ids, r := listIDs(t, s, tok, "/api/machines?"+tc.query)
				switch {
				case tc.empty && notFound:
					if status != http.StatusNotFound || r.apiError(t).Code != "NotFound" {
						t.Errorf("%s: status %d %s, want 404 NotFound", tc.name, status, r.body)
					}
				case tc.empty:
					if status != 200 || len(ids) != 0 {
						t.Errorf("%s: status %d ids %v, want 200 and none", tc.name, status, ids)
					}
				default:
					if status != 200 || len(ids) != 1 {
						t.Errorf("%s: status %d ids %v, want 200 and one", tc.name, status, ids)
					}
				}
			}
		})
	}
}

func TestRateLimit(t *testing.T) {
	minute := mdesim.Window{Count: 3, Length: time.Minute}
	hour := mdesim.Window{Count: 5, Length: time.Hour}
	s := newSim(t, mdesim.Options{TokenLifetime: 2 * time.Hour, Limits: map[string][]mdesim.Window{
		mdesim.APIMachines: {minute, hour},
	}})
	tokA := s.token(t, tenantA, clientA, secretA)
	tokB := s.token(t, tenantB, clientB, secretB)
	start := s.clock.Now()
	at := func(d time.Duration) { s.clock.Advance(start.Add(d).Sub(s.clock.Now())) }
	get := func(tok string) response { return s.do(t, http.MethodGet, "/api/machines/"+winID, tok, "", "") }

	steps := []struct {
		at         time.Duration
		token      string
		wantStatus int
		wantRetry  string // Retry-After, for 429
		wantMsg    string
	}{
		{0, tokA, 200, "", ""},
		{10 * time.Second, tokA, 200, "", ""},
		{20 * time.Second, tokA, 200, "", ""},
		{30 * time.Second, tokA, 429, "30", "API calls quota exceeded! maximum allowed 3 per 00:01:00"},
		{30 * time.Second, tokB, 404, "", ""}, // another tenant has its own windows
		{59*time.Second + 500*time.Millisecond, tokA, 429, "1", ""},
		{60 * time.Second, tokA, 200, "", ""}, // the call at 0s has left the window
		{61 * time.Second, tokA, 429, "9", ""},
		{70 * time.Second, tokA, 200, "", ""}, // fifth admitted call: the hour window is now full
		{200 * time.Second, tokA, 429, "3400", "API calls quota exceeded! maximum allowed 5 per 01:00:00"},
		{time.Hour, tokA, 200, "", ""},
	}
	for _, st := range steps {
		at(st.at)
		r := get(st.token)
		if r.status != st.wantStatus {
			t.Fatalf("at %v: status %d, want %d: %s", st.at, r.status, st.wantStatus, r.body)
		}
		if st.wantStatus != 429 {
			continue
		}
		if got := r.header.Get("Retry-After"); got != st.wantRetry {
			t.Errorf("at %v: Retry-After = %q, want %q", st.at, got, st.wantRetry)
		}
		e := r.apiError(t)
		if e.Code != "429" {
			t.Errorf("at %v: code = %q, want \"429\"", st.at, e.Code)
		}
		if st.wantMsg != "" && e.Message != st.wantMsg {
			t.Errorf("at %v: message = %q, want %q", st.at, e.Message, st.wantMsg)
		}
	}
	if got := s.ThrottledCount(tenantA, mdesim.APIMachines); got != 4 {
		t.Errorf("ThrottledCount = %d, want 4", got)
	}
	if got := s.ThrottledCount(tenantB, mdesim.APIMachines); got != 0 {
		t.Errorf("ThrottledCount(B) = %d, want 0", got)
	}
	if got := s.MaxInWindow(tenantA, mdesim.APIMachines, minute); got != 3 {
		t.Errorf("MaxInWindow(minute) = %d, want 3", got)
	}
	if got := s.MaxInWindow(tenantA, mdesim.APIMachines, hour); got != 5 {
		t.Errorf("MaxInWindow(hour) = %d, want 5", got)
	}
	// Other APIs are not limited.
	for range 10 {
		if r := s.do(t, http.MethodGet, "/api/machineactions", tokA, "", ""); r.status != 200 {
			t.Fatalf("machineactions: %d", r.status)
		}
	}
}

// ParseLimits("none"), as mdesim --limits none gives it, turns every
// limit off: the documented 100 calls a minute do not throttle the 101st.
func TestParseLimitsNoneIsUnlimited(t *testing.T) {
	limits, err := mdesim.ParseLimits("none")
	if err != nil {
		t.Fatal(err)
	}
	s := newSim(t, mdesim.Options{TokenLifetime: 2 * time.Hour, Limits: limits})
	tok := s.token(t, tenantA, clientA, secretA)
	for i := range 101 {
		if r := s.do(t, http.MethodGet, "/api/machines/"+winID, tok, "", ""); r.status != http.StatusOK {
			t.Fatalf("call %d: status %d", i+1, r.status)
		}
	}
}

func TestRateLimitConcurrent(t *testing.T) {
	w := mdesim.Window{Count: 10, Length: time.Minute}
	s := newSim(t, mdesim.Options{Limits: map[string][]mdesim.Window{mdesim.APIOffboard: {w}}})
	tok := s.token(t, tenantA, clientA, secretA)
	ids := make([]string, 40)
	for i := range ids {
		ids[i] = mdesim.NewMachineID()
		s.AddMachine(tenantA, mdesim.Machine{ID: ids[i], ComputerDNSName: fmt.Sprintf("c-%02d", i)})
	}
	var wg sync.WaitGroup
	statuses := make([]int, len(ids))
	for i, id := range ids {
		wg.Go(func() {
			req, _ := http.NewRequest(http.MethodPost, s.base+"/api/machines/"+id+"/offboard", strings.NewReader(`{"Comment":"c"}`))
			req.Header.Set("Authorization", "Bearer "+tok)
			req.Header.Set("Content-Type", "application/json")
			resp, err := s.client.Do(req)
			if err != nil {
				t.Error(err)
				return
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			statuses[i] = resp.StatusCode
		})
	}
	wg.Wait()
	count := map[int]int{}
	for _, st := range statuses {
		count[st]++
	}
	if count[201] != 10 || count[429] != 30 {
		t.Errorf("statuses = %v, want 10×201 and 30×429", count)
	}
	if got := s.MaxInWindow(tenantA, mdesim.APIOffboard, w); got != 10 {
		t.Errorf("MaxInWindow = %d, want 10", got)
	}
	if got := len(s.Actions(tenantA)); got != 10 {
		t.Errorf("actions = %d, want 10", got)
	}
}

func TestMaxInWindow(t *testing.T) {
	s := newSim(t, mdesim.Options{})
	tok := s.token(t, tenantA, clientA, secretA)
	for _, d := range []time.Duration{0, 30 * time.Second, 30 * time.Second} {
		s.clock.Advance(d)
		s.do(t, http.MethodGet, "/api/machines", tok, "", "")
	}
	s.do(t, http.MethodGet, "/api/machines", "", "", "") // unauthenticated: not the tenant's
	tests := []struct {
		length time.Duration
		want   int
	}{
		{time.Second, 1},
		{30 * time.Second, 1},
		{30*time.Second + 1, 2},
		{time.Minute, 2},
		{time.Minute + 1, 3},
	}
	for _, tc := range tests {
		if got := s.MaxInWindow(tenantA, mdesim.APIMachines, mdesim.Window{Length: tc.length}); got != tc.want {
			t.Errorf("MaxInWindow(%v) = %d, want %d", tc.length, got, tc.want)
		}
	}
	if got := s.MaxInWindow(tenantA, mdesim.APIOffboard, mdesim.Window{Length: time.Hour}); got != 0 {
		t.Errorf("MaxInWindow(offboard) = %d, want 0", got)
	}
}

func TestInjectStatus(t *testing.T) {
	s := newSim(t, mdesim.Options{Limits: map[string][]mdesim.Window{mdesim.APIOffboard: {{Count: 100, Length: time.Minute}}}})
	tok := s.token(t, tenantA, clientA, secretA)
	s.InjectStatus(tenantA, mdesim.APIOffboard, 429, "", "", 1, 2500*time.Millisecond)
	s.InjectStatus(tenantA, mdesim.APIOffboard, 500, "", "", 2, 0)
	s.InjectStatus(tenantA, mdesim.APIOffboard, 404, "ResourceNotFound", "gone", 1, 0)

	want := []struct {
		status int
		code   string
		retry  string
	}{
		{429, "429", "3"},
		{500, "InternalServerError", ""},
		{500, "InternalServerError", ""},
		{404, "ResourceNotFound", ""},
		{201, "", ""},
	}
	for i, w := range want {
		r := s.offboard(t, tok, winID, "x")
		if r.status != w.status {
			t.Fatalf("call %d: status %d, want %d: %s", i, r.status, w.status, r.body)
		}
		if w.code != "" {
			if e := r.apiError(t); e.Code != w.code {
				t.Errorf("call %d: code %q, want %q", i, e.Code, w.code)
			}
		}
		if got := r.header.Get("Retry-After"); got != w.retry {
			t.Errorf("call %d: Retry-After = %q, want %q", i, got, w.retry)
		}
	}
	// Injections are per tenant and API.
	if r := s.do(t, http.MethodGet, "/api/machines", tok, "", ""); r.status != 200 {
		t.Errorf("machines: %d", r.status)
	}
	if got := s.ThrottledCount(tenantA, mdesim.APIOffboard); got != 0 {
		t.Errorf("ThrottledCount = %d, want 0 (injected 429s are not window 429s)", got)
	}
	if got := s.MaxInWindow(tenantA, mdesim.APIOffboard, mdesim.Window{Count: 100, Length: time.Minute}); got != 5 {
		t.Errorf("MaxInWindow = %d, want 5 (injected answers are admitted calls)", got)
	}
}

func TestFaults(t *testing.T) {
	tests := []struct {
		name       string
		opts       mdesim.Options
		method     string
		path       string
		wantStatus int
		wantCode   string
	}{
		{"fail rate on offboard", mdesim.Options{FailRate: 1}, "POST", "/api/machines/" + winID + "/offboard", 500, "InternalServerError"},
		{"fail rate on read", mdesim.Options{FailRate: 1}, "GET", "/api/machineactions", 500, "InternalServerError"},
		{"spurious 404 on offboard", mdesim.Options{Spurious404Rate: 1}, "POST", "/api/machines/" + winID + "/offboard", 404, "ResourceNotFound"},
		{"spurious 404 on GET machine", mdesim.Options{Spurious404Rate: 1}, "GET", "/api/machines/" + winID, 404, "ResourceNotFound"},
		{"no spurious 404 on list", mdesim.Options{Spurious404Rate: 1}, "GET", "/api/machines", 200, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := newSim(t, tc.opts)
			tok := s.token(t, tenantA, clientA, secretA)
			body := ""
			if tc.method == "POST" {
				body = `{"Comment":"x"}`
			}
			r := s.do(t, tc.method, tc.path, tok, "application/json", body)
			if r.status != tc.wantStatus {
				t.Fatalf("status %d, want %d: %s", r.status, tc.wantStatus, r.body)
			}
			if tc.wantCode != "" && r.apiError(t).Code != tc.wantCode {
				t.Errorf("code = %q", r.apiError(t).Code)
			}
			if n := len(s.Actions(tenantA)); n != 0 {
				t.Errorf("%d actions created", n)
			}
		})
	}

	t.Run("deterministic with Rand", func(t *testing.T) {
		run := func() []int {
			s := newSim(t, mdesim.Options{FailRate: 0.5, Rand: mrand.New(mrand.NewPCG(1, 2))})
			tok := s.token(t, tenantA, clientA, secretA)
			var st []int
			for range 20 {
				st = append(st, s.do(t, http.MethodGet, "/api/machines", tok, "", "").status)
			}
			return st
		}
		a, b := run(), run()
		if fmt.Sprint(a) != fmt.Sprint(b) {
			t.Errorf("runs differ: %v vs %v", a, b)
		}
		if !strings.Contains(fmt.Sprint(a), "500") || !strings.Contains(fmt.Sprint(a), "200") {
			t.Errorf("want a mix of 200 and 500: %v", a)
		}
	})
}

func TestLatency(t *testing.T) {
	s := newSim(t, mdesim.Options{Latency: 2 * time.Second})
	tok := s.token(t, tenantA, clientA, secretA)
	done := make(chan int, 1)
	get := func() {
		req, _ := http.NewRequest(http.MethodGet, s.base+"/api/machines", nil)
		req.Header.Set("Authorization", "Bearer "+tok)
		resp, err := s.client.Do(req)
		if err != nil {
			done <- 0
			return
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		done <- resp.StatusCode
	}
	go get()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := s.clock.BlockUntilContext(ctx, 1); err != nil {
		t.Fatal(err)
	}
	select {
	case <-done:
		t.Fatal("answered before the latency elapsed")
	case <-time.After(50 * time.Millisecond):
	}
	s.clock.Advance(2 * time.Second)
	if st := <-done; st != 200 {
		t.Errorf("status %d", st)
	}

	// Close releases a request still waiting.
	go get()
	if err := s.clock.BlockUntilContext(ctx, 1); err != nil {
		t.Fatal(err)
	}
	s.Close()
	testwait.For(t, done, 10*time.Second, "the waiting request released by Close")
}

// TestHoldAnswers: an offboard call of a held device is acted on at once
// and answered only once released; another device's call is not held.
func TestHoldAnswers(t *testing.T) {
	s := newSim(t, mdesim.Options{})
	tok := s.token(t, tenantA, clientA, secretA)
	release := s.HoldAnswers(strings.ToUpper(tenantA), winID)
	done := make(chan response, 1)
	go func() { done <- s.offboard(t, tok, winID, "held") }()
	deadline := time.Now().Add(10 * time.Second)
	for len(s.Actions(tenantA)) == 0 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if len(s.Actions(tenantA)) == 0 {
		t.Fatal("the held call made no action")
	}
	if r := s.offboard(t, tok, win2ID, "not held"); r.status != http.StatusCreated {
		t.Errorf("another device's offboard: status %d, want 201 at once", r.status)
	}
	select {
	case <-done:
		t.Fatal("answered before release")
	case <-time.After(100 * time.Millisecond):
	}
	release()
	release() // twice is harmless
	if r := testwait.For(t, done, 10*time.Second, "the held offboard answered once released"); r.status != http.StatusCreated {
		t.Errorf("held offboard: status %d, want 201", r.status)
	}
}

func TestParseLimits(t *testing.T) {
	def := []mdesim.Window{{Count: 100, Length: time.Minute}, {Count: 1500, Length: time.Hour}}
	tests := []struct {
		spec    string
		want    map[string][]mdesim.Window
		wantErr bool
	}{
		{"", map[string][]mdesim.Window{"offboard": def, "machines": def, "machineactions": def}, false},
		{"none", map[string][]mdesim.Window{"offboard": nil, "machines": nil, "machineactions": nil}, false},
		{"offboard=10/1m,50/1h;machines=5/30s", map[string][]mdesim.Window{
			"offboard":       {{10, time.Minute}, {50, time.Hour}},
			"machines":       {{5, 30 * time.Second}},
			"machineactions": def,
		}, false},
		{"machineactions=none; offboard=1/m", map[string][]mdesim.Window{
			"offboard":       {{1, time.Minute}},
			"machines":       def,
			"machineactions": nil,
		}, false},
		{"alerts=1/1m", nil, true},
		{"offboard=1", nil, true},
		{"offboard=x/1m", nil, true},
		{"offboard=1/0s", nil, true},
	}
	for _, tc := range tests {
		got, err := mdesim.ParseLimits(tc.spec)
		if (err != nil) != tc.wantErr {
			t.Errorf("ParseLimits(%q) error = %v", tc.spec, err)
			continue
		}
		if !tc.wantErr && fmt.Sprint(got) != fmt.Sprint(tc.want) {
			t.Errorf("ParseLimits(%q) = %v, want %v", tc.spec, got, tc.want)
		}
	}
}

func TestCallLog(t *testing.T) {
	s := newSim(t, mdesim.Options{})
	tok := s.token(t, tenantA, clientA, secretA)
	s.do(t, http.MethodGet, "/api/machines?$top=1", "", "", "")
	s.clock.Advance(time.Second)
	s.do(t, http.MethodGet, "/api/machines?$top=1", tok, "", "")
	c := s.Calls()
	if len(c) != 2 {
		t.Fatalf("calls = %+v", c)
	}
	if c[0].TenantID != "" || c[0].Status != 401 || c[0].Path != "/api/machines?$top=1" || c[0].API != mdesim.APIMachines {
		t.Errorf("call 0 = %+v", c[0])
	}
	if c[1].TenantID != tenantA || c[1].ClientID != clientA || c[1].Status != 200 || !c[1].At.Equal(t0.Add(time.Second)) {
		t.Errorf("call 1 = %+v", c[1])
	}
	if got := strconv.Itoa(s.TokenRequests(tenantA)); got != "1" {
		t.Errorf("TokenRequests = %s, want 1", got)
	}
}

func TestStartTLSListener(t *testing.T) {
	cert, err := mdesim.NewSelfSignedCert("localhost", "127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := mdesim.New(mdesim.Options{})
	defer s.Close()
	s.AddTenant(mdesim.Tenant{TenantID: tenantA, ClientID: clientA, ClientSecret: secretA})
	base := s.StartTLSListener(ln, &cert)
	if s.URL() != base || s.StartTLS() != base {
		t.Errorf("URL() = %q, StartTLS() again = %q, want %q", s.URL(), s.StartTLS(), base)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(s.CertPEM()) {
		t.Fatalf("CertPEM: %q", s.CertPEM())
	}
	tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}
	defer tr.CloseIdleConnections()
	_, port, _ := net.SplitHostPort(ln.Addr().String())
	resp, err := (&http.Client{Transport: tr}).Get("https://localhost:" + port + "/" + tenantA + "/v2.0/.well-known/openid-configuration")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var m map[string]any
	if err := json.NewDecoder(resp.Body).Decode(&m); err != nil {
		t.Fatal(err)
	}
	if want := "https://localhost:" + port + "/" + tenantA + "/v2.0"; m["issuer"] != want {
		t.Errorf("issuer = %v, want %s (the host the client used)", m["issuer"], want)
	}
}

// TestHTTP2: with HTTP2 the simulator answers an HTTP/2 client over
// HTTP/2 and an HTTP/1.1 client over HTTP/1.1; without it, both over
// HTTP/1.1.
func TestHTTP2(t *testing.T) {
	for _, offered := range []bool{false, true} {
		s := mdesim.New(mdesim.Options{HTTP2: offered})
		t.Cleanup(s.Close)
		base := s.StartTLS()
		pool := x509.NewCertPool()
		pool.AppendCertsFromPEM(s.CertPEM())
		for _, h2 := range []bool{false, true} {
			tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}, ForceAttemptHTTP2: h2}
			resp, err := (&http.Client{Transport: tr}).Get(base + "/" + tenantA + "/v2.0/.well-known/openid-configuration")
			if err != nil {
				t.Fatalf("HTTP2 %v, client HTTP/2 %v: %v", offered, h2, err)
			}
			_ = resp.Body.Close()
			tr.CloseIdleConnections()
			if want := 1 + btoi(offered && h2); resp.ProtoMajor != want {
				t.Errorf("HTTP2 %v, client HTTP/2 %v: answered over %s, want HTTP/%d", offered, h2, resp.Proto, want)
			}
		}
	}
}

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}

func TestLoginFaults(t *testing.T) {
	s := newSim(t, mdesim.Options{})
	good := url.Values{"grant_type": {"client_credentials"}, "client_id": {clientA}, "client_secret": {secretA}, "scope": {mdesim.ScopeSecurityCenter}}

	s.InjectLoginFault(tenantA, mdesim.LoginGarbled, 1)
	r := s.tokenRequest(t, tenantA, good)
	if r.status != http.StatusOK || !strings.Contains(string(r.body), `"expires_in":"3599.0"`) ||
		!strings.Contains(string(r.body), mdesim.FaultAccessToken) {
		t.Errorf("garbled: status %d, body %s", r.status, r.body)
	}
	if tok := s.token(t, tenantA, clientA, secretA); tok == mdesim.FaultAccessToken {
		t.Error("the fault outlived its one request")
	}

	s.InjectLoginFault(tenantA, mdesim.LoginRefusedLongBody, 2)
	for range 2 {
		r = s.tokenRequest(t, tenantA, good)
		var e struct {
			Codes         []int  `json:"error_codes"`
			CorrelationID string `json:"correlation_id"`
			Description   string `json:"error_description"`
		}
		if err := json.Unmarshal(r.body, &e); err != nil {
			t.Fatalf("refused: body is not JSON: %v", err)
		}
		if r.status != http.StatusUnauthorized || len(r.body) < 100<<10 || len(e.Codes) != 1 || e.Codes[0] != mdesim.FaultAADSTS ||
			e.CorrelationID != mdesim.FaultCorrelationID || !strings.Contains(e.Description, mdesim.FaultSecret) {
			t.Errorf("refused: status %d, %d bytes, codes %v, correlation id %q", r.status, len(r.body), e.Codes, e.CorrelationID)
		}
	}
	if r := s.tokenRequest(t, tenantB, url.Values{"grant_type": {"client_credentials"}, "client_id": {clientB},
		"client_secret": {secretB}, "scope": {mdesim.ScopeSecurityCenter}}); r.status != http.StatusOK || strings.Contains(string(r.body), "3599.0") {
		t.Errorf("another tenant: status %d, body %s", r.status, r.body)
	}
	s.InjectLoginFault(tenantA, mdesim.LoginGarbled, 5)
	s.InjectLoginFault(tenantA, mdesim.LoginGarbled, 0)
	s.token(t, tenantA, clientA, secretA)

	all := newSim(t, mdesim.Options{LoginFault: mdesim.LoginGarbled})
	for range 2 {
		if r := all.tokenRequest(t, tenantB, url.Values{}); r.status != http.StatusOK || !strings.Contains(string(r.body), mdesim.FaultAccessToken) {
			t.Errorf("Options.LoginFault: status %d, body %s", r.status, r.body)
		}
	}
	for _, f := range []mdesim.LoginFault{mdesim.LoginNormal, mdesim.LoginGarbled, mdesim.LoginRefusedLongBody, mdesim.LoginHugeBody, mdesim.LoginBrokenToken} {
		if got, err := mdesim.ParseLoginFault(f.String()); err != nil || got != f {
			t.Errorf("ParseLoginFault(%q) = %v, %v", f.String(), got, err)
		}
	}
	if _, err := mdesim.ParseLoginFault("nope"); err == nil {
		t.Error("ParseLoginFault(nope) = nil error")
	}
}

// Unlimited turns every limit off, windows given in Limits too: the
// 101st call of a minute is admitted, and so is the second call under
// a window of one.
func TestUnlimitedIgnoresLimits(t *testing.T) {
	s := newSim(t, mdesim.Options{TokenLifetime: 2 * time.Hour, Unlimited: true, Limits: map[string][]mdesim.Window{
		mdesim.APIMachines: {{Count: 1, Length: time.Minute}},
	}})
	tok := s.token(t, tenantA, clientA, secretA)
	for i := range 101 {
		if r := s.do(t, http.MethodGet, "/api/machines/"+winID, tok, "", ""); r.status != http.StatusOK {
			t.Fatalf("call %d: status %d", i+1, r.status)
		}
	}
}

// TestTokenIsAJWTOfTheRealSize: an access token is a JWT (three base64url
// parts, RS256, an app-only token's claims for the tenant, the
// application and the API) of 1-2 KB, as the service's are: a client
// sends it in every call and keeps one per tenant, so the benchmarks'
// figures depend on its size. The simulator's tokens were 43 characters.
func TestTokenIsAJWTOfTheRealSize(t *testing.T) {
	s := newSim(t, mdesim.Options{})
	tok := s.token(t, tenantA, clientA, secretA)
	parts := strings.Split(tok, ".")
	if len(parts) != 3 || len(tok) < 1000 || len(tok) > 2500 {
		t.Fatalf("token of %d characters in %d parts, want a JWT of 1-2.5 KB", len(tok), len(parts))
	}
	var header struct{ Alg, Typ string }
	var claims struct {
		Aud, Tid, Appid string
		Roles           []string
		Exp, Nbf        int64
	}
	for i, v := range []any{&header, &claims} {
		b, err := base64.RawURLEncoding.DecodeString(parts[i])
		if err != nil {
			t.Fatalf("part %d: %v", i, err)
		}
		if err := json.Unmarshal(b, v); err != nil {
			t.Fatalf("part %d: %s: %v", i, b, err)
		}
	}
	if header.Alg != "RS256" || header.Typ != "JWT" || claims.Tid != tenantA || claims.Appid != clientA ||
		!strings.Contains(claims.Aud, "securitycenter") || claims.Exp <= claims.Nbf {
		t.Errorf("header %+v, claims %+v", header, claims)
	}
	if r := s.offboard(t, tok, winID, "retired"); r.status != http.StatusCreated {
		t.Errorf("offboard with the token: status %d: %s", r.status, r.body)
	}
}
