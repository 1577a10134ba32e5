package mdesim

import (
	"crypto/rand"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/subtle"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/google/uuid"
)

const (
	grantClientCredentials = "client_credentials"
	assertionTypeJWTBearer = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
	// assertionLeeway is the clock skew tolerated on client assertions.
	assertionLeeway = 5 * time.Minute
)

// baseURL returns the scheme and host the client used to reach the server.
func baseURL(r *http.Request) string {
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	return scheme + "://" + r.Host
}

func (s *Server) serveOpenIDConfig(w http.ResponseWriter, r *http.Request, tenantID string) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		s.writeAADError(w, http.StatusMethodNotAllowed, "invalid_request", 900561,
			"The endpoint only accepts GET, OPTIONS requests. Received a "+r.Method+" request.")
		return
	}
	s.mu.Lock()
	tn := s.tenants[strings.ToLower(tenantID)]
	known := tn != nil && tn.registered
	s.mu.Unlock()
	if !known {
		s.writeAADError(w, http.StatusBadRequest, "invalid_tenant", 90002, tenantNotFound(tenantID))
		return
	}
	base := baseURL(r) + "/" + tenantID
	writeJSON(w, http.StatusOK, "application/json; charset=utf-8", map[string]any{
		"token_endpoint":                        base + "/oauth2/v2.0/token",
		"token_endpoint_auth_methods_supported": []string{"client_secret_post", "private_key_jwt", "client_secret_basic"},
		"jwks_uri":                              baseURL(r) + "/" + tenantID + "/discovery/v2.0/keys",
		"response_modes_supported":              []string{"query", "fragment", "form_post"},
		"subject_types_supported":               []string{"pairwise"},
		"id_token_signing_alg_values_supported": []string{"RS256"},
		"response_types_supported":              []string{"code", "id_token", "code id_token", "id_token token"},
		"scopes_supported":                      []string{"openid", "profile", "email", "offline_access"},
		"issuer":                                base + "/v2.0",
		"request_uri_parameter_supported":       false,
		"authorization_endpoint":                base + "/oauth2/v2.0/authorize",
		"device_authorization_endpoint":         base + "/oauth2/v2.0/devicecode",
		"end_session_endpoint":                  base + "/oauth2/v2.0/logout",
		"tenant_region_scope":                   "EU",
		"cloud_instance_name":                   "microsoftonline.com",
		"cloud_graph_host_name":                 "graph.windows.net",
		"msgraph_host":                          "graph.microsoft.com",
	})
}

func tenantNotFound(tenantID string) string {
	return fmt.Sprintf("Tenant '%s' not found. Check to make sure you have the correct tenant ID and are signing into the correct cloud. "+
		"Check with your subscription administrator, this may happen if there are no active subscriptions for the tenant.", tenantID)
}

// aadError is an error answer of the token endpoint.
type aadError struct {
	status  int
	err     string
	code    int
	message string
}

func (s *Server) serveToken(w http.ResponseWriter, r *http.Request, tenantID string) {
	s.mu.Lock()
	s.tokenRequests[strings.ToLower(tenantID)]++
	fault := s.loginFaultLocked(tenantID)
	s.mu.Unlock()

	if r.Method != http.MethodPost {
		s.writeAADError(w, http.StatusMethodNotAllowed, "invalid_request", 900561,
			"The endpoint only accepts POST, OPTIONS requests. Received a "+r.Method+" request.")
		return
	}
	if s.writeLoginFault(w, fault) {
		return
	}
	form, ok := s.tokenForm(w, r)
	if !ok {
		return
	}
	tokenEndpoint := baseURL(r) + r.URL.Path

	s.mu.Lock()
	now := s.clock.Now()
	tn := s.tenants[strings.ToLower(tenantID)]
	var app tenant
	if tn != nil {
		app = *tn
		app.secrets = slices.Clone(tn.secrets)
	}
	s.mu.Unlock()

	if tn == nil || !app.registered {
		s.writeAADError(w, http.StatusBadRequest, "invalid_tenant", 90002, tenantNotFound(tenantID))
		return
	}
	if e := s.checkTokenRequest(form, &app, tokenEndpoint, now); e != nil {
		s.writeAADError(w, e.status, e.err, e.code, e.message)
		return
	}
	audience, _ := s.scopeAudience(form.Get("scope"), &app)
	s.issueToken(w, tn, &app, audience, now)
}

// tokenForm reads a token request's form, taking the client id and secret
// from HTTP basic authentication when the form lacks them. It answers the
// request itself and reports false when the form cannot be read.
func (s *Server) tokenForm(w http.ResponseWriter, r *http.Request) (url.Values, bool) {
	r.Body = http.MaxBytesReader(w, r.Body, 1<<20)
	if err := r.ParseForm(); err != nil {
		s.writeAADError(w, http.StatusBadRequest, "invalid_request", 900144,
			"The request body must contain the following parameter: 'grant_type'.")
		return nil, false
	}
	form := r.PostForm
	if user, pass, ok := r.BasicAuth(); ok && form.Get("client_secret") == "" {
		if form.Get("client_id") == "" {
			if u, err := url.QueryUnescape(user); err == nil {
				form.Set("client_id", u)
			}
		}
		if p, err := url.QueryUnescape(pass); err == nil {
			form.Set("client_secret", p)
		}
	}
	return form, true
}

// accessTokenText is a new access token as the service writes one: a
// JWT signed RS256, its claims those of an app-only token, about 1.4 KB
// (a client carries it in every call and keeps one per tenant, so its
// size counts). Its signature is random: the simulator knows its tokens
// by their text.
func accessTokenText(tn, app *tenant, audience string, now time.Time, lifetime time.Duration) string {
	if audience == "" {
		audience = "https://api.securitycenter.microsoft.com" // the API's own
	}
	var kid [20]byte
	rand.Read(kid[:])
	header, _ := json.Marshal(map[string]string{"typ": "JWT", "alg": "RS256",
		"x5t": base64.RawURLEncoding.EncodeToString(kid[:]), "kid": base64.RawURLEncoding.EncodeToString(kid[:])})
	var aio, uti [48]byte
	rand.Read(aio[:])
	rand.Read(uti[:16])
	claims, _ := json.Marshal(map[string]any{
		"aud": audience, "iss": "https://sts.windows.net/" + tn.id + "/",
		"iat": now.Unix(), "nbf": now.Unix(), "exp": now.Add(lifetime).Unix(),
		"aio": base64.RawURLEncoding.EncodeToString(aio[:]), "app_displayname": "mde-offboard",
		"appid": app.clientID, "appidacr": "1", "idp": "https://sts.windows.net/" + tn.id + "/",
		"oid": uuid.NewString(), "rh": "0.AXkA" + base64.RawURLEncoding.EncodeToString(aio[:24]) + ".",
		"roles": app.roles, "sub": uuid.NewString(), "tid": tn.id,
		"uti": base64.RawURLEncoding.EncodeToString(uti[:16]), "ver": "1.0",
	})
	var sig [256]byte
	rand.Read(sig[:])
	return base64.RawURLEncoding.EncodeToString(header) + "." + base64.RawURLEncoding.EncodeToString(claims) + "." +
		base64.RawURLEncoding.EncodeToString(sig[:])
}

// issueToken records a new access token of the tenant's application and
// answers with it.
func (s *Server) issueToken(w http.ResponseWriter, tn *tenant, app *tenant, audience string, now time.Time) {
	lifetime := s.opts.TokenLifetime
	raw := accessTokenText(tn, app, audience, now, lifetime)
	s.mu.Lock()
	for k, t := range s.tokens {
		if !now.Before(t.expires) {
			delete(s.tokens, k)
		}
	}
	s.tokens[raw] = &accessToken{
		tenant:   tn,
		clientID: app.clientID,
		roles:    slices.Clone(app.roles),
		expires:  now.Add(lifetime),
		audience: audience,
	}
	s.mu.Unlock()

	secs := int64(lifetime / time.Second)
	w.Header().Set("Cache-Control", "no-store, no-cache")
	w.Header().Set("Pragma", "no-cache")
	writeJSON(w, http.StatusOK, "application/json; charset=utf-8", map[string]any{
		"token_type":     "Bearer",
		"expires_in":     secs,
		"ext_expires_in": secs,
		"access_token":   raw,
	})
}

// checkTokenRequest validates a client-credentials request in the order
// Entra ID does: parameters, application, scope, then credentials.
func (s *Server) checkTokenRequest(form url.Values, app *tenant, tokenEndpoint string, now time.Time) *aadError {
	missing := func(p string) *aadError {
		return &aadError{http.StatusBadRequest, "invalid_request", 900144,
			fmt.Sprintf("The request body must contain the following parameter: '%s'.", p)}
	}
	grant := form.Get("grant_type")
	if grant == "" {
		return missing("grant_type")
	}
	if grant != grantClientCredentials {
		return &aadError{http.StatusBadRequest, "unsupported_grant_type", 70003,
			"The app requested an unsupported grant type '" + grant + "'."}
	}
	clientID := form.Get("client_id")
	if clientID == "" {
		return missing("client_id")
	}
	scope := form.Get("scope")
	if scope == "" {
		return missing("scope")
	}
	if !strings.EqualFold(clientID, app.clientID) {
		return &aadError{http.StatusBadRequest, "unauthorized_client", 700016,
			fmt.Sprintf("Application with identifier '%s' was not found in the directory '%s'. "+
				"This can happen if the application has not been installed by the administrator of the tenant or consented to by any user in the tenant. "+
				"You may have sent your authentication request to the wrong tenant.", clientID, app.id)}
	}
	if _, e := s.scopeAudience(scope, app); e != nil {
		return e
	}

	secret := form.Get("client_secret")
	assertion := form.Get("client_assertion")
	switch {
	case secret != "":
		for _, ok := range app.secrets {
			if subtle.ConstantTimeCompare([]byte(ok), []byte(secret)) == 1 {
				return nil
			}
		}
		return &aadError{http.StatusUnauthorized, "invalid_client", 7000215,
			fmt.Sprintf("Invalid client secret provided. Ensure the secret being sent in the request is the client secret value, "+
				"not the client secret ID, for a secret added to app '%s'.", app.clientID)}
	case assertion != "":
		if t := form.Get("client_assertion_type"); t != assertionTypeJWTBearer {
			return &aadError{http.StatusBadRequest, "invalid_request", 50027,
				"Invalid client_assertion_type '" + t + "'. The only supported value is '" + assertionTypeJWTBearer + "'."}
		}
		if app.federated != "" && subtle.ConstantTimeCompare([]byte(app.federated), []byte(assertion)) == 1 {
			return nil
		}
		return checkAssertion(assertion, app, tokenEndpoint, now)
	default:
		return &aadError{http.StatusUnauthorized, "invalid_client", 7000216,
			"'client_assertion', 'client_secret' or 'request' is required for the 'client_credentials' grant type."}
	}
}

// scopeAudience reads the space-separated scope of a client-credentials
// request, leaving out the OpenID scopes MSAL always adds, as Entra ID
// does: one of the API's scopes gives a token for the API (""); the
// .default scope of another resource the tenant has, a token for that
// resource (its name in lower case), which the API refuses. More than
// one resource, or a scope not of the form "<resource>/.default", is
// AADSTS70011; a resource the tenant does not have, AADSTS500011.
func (s *Server) scopeAudience(scope string, app *tenant) (string, *aadError) {
	var resources []string
	for _, sc := range strings.Fields(scope) {
		switch strings.ToLower(sc) {
		case "openid", "profile", "offline_access":
		default:
			resources = append(resources, sc)
		}
	}
	invalid := &aadError{http.StatusBadRequest, "invalid_scope", 70011,
		fmt.Sprintf("The provided value for the input parameter 'scope' is not valid. The scope %s is not valid.", scope)}
	if len(resources) != 1 {
		return "", invalid
	}
	sc := resources[0]
	if slices.ContainsFunc(s.opts.Scopes, func(ok string) bool { return strings.EqualFold(ok, sc) }) {
		return "", nil
	}
	const dflt = "/.default"
	if len(sc) <= len(dflt) || !strings.EqualFold(sc[len(sc)-len(dflt):], dflt) {
		return "", invalid
	}
	resource := sc[:len(sc)-len(dflt)]
	if slices.ContainsFunc(s.opts.OtherResources, func(r string) bool { return strings.EqualFold(strings.TrimSuffix(r, "/"), resource) }) {
		return strings.ToLower(resource), nil
	}
	return "", &aadError{http.StatusBadRequest, "invalid_resource", 500011,
		fmt.Sprintf("The resource principal named %s was not found in the tenant named %s. "+
			"This can happen if the application has not been installed by the administrator of the tenant or consented to by any user in the tenant. "+
			"You might have sent your authentication request to the wrong tenant.", resource, app.id)}
}

// checkAssertion verifies a certificate client assertion: signature by the
// registered certificate's key, named by a thumbprint header, iss and sub
// equal to the client id, aud holding the token endpoint, and the validity
// period.
func checkAssertion(assertion string, app *tenant, tokenEndpoint string, now time.Time) *aadError {
	badSig := &aadError{http.StatusUnauthorized, "invalid_client", 700027,
		"Client assertion failed signature validation."}
	if app.cert == nil {
		return &aadError{http.StatusUnauthorized, "invalid_client", 700027,
			"The certificate with identifier used to sign the client assertion is not registered on application."}
	}
	claims := &jwt.RegisteredClaims{}
	_, err := jwt.ParseWithClaims(assertion, claims, func(t *jwt.Token) (any, error) {
		if !thumbprintMatches(t.Header, app.cert) {
			return nil, errors.New("thumbprint mismatch")
		}
		return app.cert.PublicKey, nil
	}, jwt.WithValidMethods([]string{"RS256", "PS256"}), jwt.WithoutClaimsValidation())
	switch {
	case errors.Is(err, jwt.ErrTokenMalformed):
		return &aadError{http.StatusUnauthorized, "invalid_client", 50027,
			"JWT token is invalid or malformed."}
	case errors.Is(err, jwt.ErrTokenUnverifiable):
		return &aadError{http.StatusUnauthorized, "invalid_client", 700027,
			"The certificate with identifier used to sign the client assertion is not registered on application."}
	case err != nil:
		return badSig
	}
	if !strings.EqualFold(claims.Issuer, app.clientID) || !strings.EqualFold(claims.Subject, app.clientID) {
		return &aadError{http.StatusUnauthorized, "invalid_client", 700021,
			"Client assertion application identifier doesn't match 'client_id' parameter."}
	}
	if !slices.Contains(claims.Audience, tokenEndpoint) {
		return &aadError{http.StatusUnauthorized, "invalid_client", 700023,
			"Client assertion audience claim does not match Realm issuer."}
	}
	if claims.ExpiresAt == nil || !now.Before(claims.ExpiresAt.Add(assertionLeeway)) ||
		(claims.NotBefore != nil && now.Add(assertionLeeway).Before(claims.NotBefore.Time)) {
		return &aadError{http.StatusUnauthorized, "invalid_client", 700024,
			"Client assertion is not within its valid time range."}
	}
	return nil
}

// thumbprintMatches checks the x5t (SHA-1) and x5t#S256 headers, when
// present, against cert. One of them must be: Entra ID finds the key of
// an assertion by its thumbprint, and refuses one that names none.
func thumbprintMatches(h map[string]any, cert *x509.Certificate) bool {
	_, sha1Named := h["x5t"]
	_, sha256Named := h["x5t#S256"]
	if !sha1Named && !sha256Named {
		return false
	}
	check := func(name string, sum []byte) bool {
		v, ok := h[name]
		if !ok {
			return true
		}
		s, _ := v.(string)
		return s == base64.StdEncoding.EncodeToString(sum) || s == base64.RawURLEncoding.EncodeToString(sum) ||
			s == base64.URLEncoding.EncodeToString(sum)
	}
	s1 := sha1.Sum(cert.Raw)
	s256 := sha256.Sum256(cert.Raw)
	return check("x5t", s1[:]) && check("x5t#S256", s256[:])
}

// writeAADError writes an Entra ID style error. The description never
// contains request secrets.
func (s *Server) writeAADError(w http.ResponseWriter, status int, errCode string, aadsts int, msg string) {
	trace, corr := uuid.NewString(), uuid.NewString()
	ts := s.clock.Now().UTC().Format("2006-01-02 15:04:05Z")
	desc := fmt.Sprintf("AADSTS%d: %s\r\nTrace ID: %s\r\nCorrelation ID: %s\r\nTimestamp: %s", aadsts, msg, trace, corr, ts)
	w.Header().Set("Cache-Control", "no-store, no-cache")
	writeJSON(w, status, "application/json; charset=utf-8", map[string]any{
		"error":             errCode,
		"error_description": desc,
		"error_codes":       []int{aadsts},
		"timestamp":         ts,
		"trace_id":          trace,
		"correlation_id":    corr,
		"error_uri":         fmt.Sprintf("https://login.microsoftonline.com/error?code=%d", aadsts),
	})
}

func writeJSON(w http.ResponseWriter, status int, contentType string, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", contentType)
	w.WriteHeader(status)
	_, _ = w.Write(b) // the client went away: nothing to do
}
