package mde

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
)

// TestLoginHostThrottling: a login host that answers the token request
// 429 with a Retry-After gets one request, and the call fails at once
// with the status and the wait, which the worker's retry takes as its
// least backoff. The identity library's own retry slept the Retry-After
// within the call's time, asked again, and the call ended "no answer
// from the login host" once its time was spent, the wait not kept.
func TestLoginHostThrottling(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	secretFile := filepath.Join(dir, "secret")
	writeSecretFile(t, secretFile, "throttled-secret-0001", time.Now())
	for _, tc := range []struct {
		status     int
		retryAfter string
		want       time.Duration
	}{
		{http.StatusTooManyRequests, "20", 20 * time.Second},
		{http.StatusTooManyRequests, "", MinRetryAfter},
		{http.StatusServiceUnavailable, "15", 15 * time.Second},
	} {
		t.Run(fmt.Sprintf("%d/%q", tc.status, tc.retryAfter), func(t *testing.T) {
			t.Parallel()
			var requests atomic.Int32
			login, c := loginHost(t, func(w http.ResponseWriter, _ *http.Request) {
				requests.Add(1)
				if tc.retryAfter != "" {
					w.Header().Set("Retry-After", tc.retryAfter)
				}
				w.Header().Set("Content-Type", "application/json")
				w.WriteHeader(tc.status)
				fmt.Fprint(w, `{"error":"temporarily_unavailable","error_description":"AADSTS50196: The server terminated an operation because it encountered a client request loop.","error_codes":[50196]}`)
			})
			cred, err := NewCredential(CredentialConfig{TenantID: simTenantID, ClientID: simClientID, ClientSecretFile: secretFile}, c, login.Client())
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			_, err = cred.GetToken(ctx, policy.TokenRequestOptions{Scopes: []string{c.Scope}})
			if err == nil {
				t.Fatal("GetToken = a token, want an error")
			}
			if ctx.Err() != nil {
				t.Errorf("GetToken took the call's whole time: %v", err)
			}
			if n := requests.Load(); n != 1 {
				t.Errorf("token requests = %d, want 1", n)
			}
			if want := fmt.Sprintf("answered HTTP %d", tc.status); !strings.Contains(err.Error(), want) {
				t.Errorf("error %q does not say %q", err, want)
			}
			v := ClassifyError(ctx, err, false)
			if v.Class != Retry || v.Reason != ReasonToken || v.RetryAfter != tc.want {
				t.Errorf("verdict = %v %v, retry after %v; want retry, token, %v", v.Class, v.Reason, v.RetryAfter, tc.want)
			}
		})
	}
}

// TestLoginHostThrottlingHeld: after a login host's 429, the tenant's
// token requests are answered from its Retry-After without asking it
// again until the wait is over: the calls of a busy tenant, each asking
// the throttled login host, kept it throttling.
func TestLoginHostThrottlingHeld(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	secretFile := filepath.Join(dir, "secret")
	writeSecretFile(t, secretFile, "throttled-secret-0002", time.Now())
	var requests atomic.Int32
	login, c := loginHost(t, func(w http.ResponseWriter, _ *http.Request) {
		if requests.Add(1) == 1 {
			w.Header().Set("Retry-After", "20")
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusTooManyRequests)
			fmt.Fprint(w, `{"error":"temporarily_unavailable","error_codes":[50196]}`)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprint(w, `{"token_type":"Bearer","expires_in":3599,"access_token":"after-the-wait"}`)
	})
	get, advance := secretFileTokens(t, login, c, secretFile)
	if err := get(); err == nil {
		t.Fatal("GetToken = a token, want the 429")
	}
	advance(5 * time.Second)
	for range 10 {
		err := get()
		var te *TokenError
		if !errors.As(err, &te) || te.Status != http.StatusTooManyRequests || te.RetryAfter != 15*time.Second {
			t.Fatalf("GetToken within the wait = %v, want the 429 with 15s left", err)
		}
	}
	if n := requests.Load(); n != 1 {
		t.Errorf("token requests within the login host's Retry-After = %d, want 1", n)
	}
	advance(15 * time.Second)
	if err := get(); err != nil {
		t.Errorf("GetToken after the wait: %v", err)
	}
}

// secretFileTokens is a credential of secretFile's client secret, signing
// in at login, on a clock that stands still until advance moves it; get
// asks it for a token.
func secretFileTokens(t *testing.T, login *httptest.Server, c Cloud, secretFile string) (get func() error, advance func(time.Duration)) {
	t.Helper()
	cred, err := NewCredential(CredentialConfig{TenantID: simTenantID, ClientID: simClientID, ClientSecretFile: secretFile}, c, login.Client())
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	now := time.Now()
	cred.now = func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	advance = func(d time.Duration) { mu.Lock(); now = now.Add(d); mu.Unlock() }
	get = func() error {
		_, err := cred.GetToken(context.Background(), policy.TokenRequestOptions{Scopes: []string{c.Scope}})
		return err
	}
	return get, advance
}

// loginHost is a login host over TLS that answers the tenant's OpenID
// discovery document, and token requests with token; c is the cloud that
// names it as the authority host.
func loginHost(t *testing.T, token http.HandlerFunc) (login *httptest.Server, c Cloud) {
	t.Helper()
	login = httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		base := "https://" + r.Host
		tenant, _, _ := strings.Cut(strings.TrimPrefix(r.URL.Path, "/"), "/")
		switch {
		case strings.HasSuffix(r.URL.Path, "/openid-configuration"):
			w.Header().Set("Content-Type", "application/json")
			fmt.Fprintf(w, `{"token_endpoint":"%[1]s/%[2]s/oauth2/v2.0/token","authorization_endpoint":"%[1]s/%[2]s/oauth2/v2.0/authorize","issuer":"%[1]s/%[2]s/v2.0"}`, base, tenant)
		case strings.HasSuffix(r.URL.Path, "/token"):
			token(w, r)
		default:
			http.NotFound(w, r)
		}
	}))
	t.Cleanup(login.Close)
	c, err := ResolveCloud("commercial", "", login.URL, "")
	if err != nil {
		t.Fatal(err)
	}
	return login, c
}
