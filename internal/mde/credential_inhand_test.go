package mde

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
)

// TestTokenInHandServesWhileTheLoginHostFails: a token past its reuse
// but not expired is handed out while the login host cannot give the
// next one (a 503, a 429 and its Retry-After, no answer in time), up to
// lastTokenUse before it expires; a refusal of the credentials is not
// covered so. Before, every call failed from tokenMargin before the
// token's end (or from its refresh_in, hours before it for a long-lived
// token), though the API would still take it, and each request counted
// an attempt, failing api_error after six.
func TestTokenInHandServesWhileTheLoginHostFails(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name   string
		answer func(w http.ResponseWriter)
		final  bool
	}{
		{name: "503", answer: func(w http.ResponseWriter) {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusServiceUnavailable)
			fmt.Fprint(w, `{"error":"temporarily_unavailable","error_codes":[90033]}`)
		}},
		{name: "429", answer: func(w http.ResponseWriter) {
			w.Header().Set("Retry-After", "20")
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusTooManyRequests)
			fmt.Fprint(w, `{"error":"temporarily_unavailable","error_codes":[50196]}`)
		}},
		{name: "refused", final: true, answer: func(w http.ResponseWriter) {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusUnauthorized)
			fmt.Fprint(w, `{"error":"invalid_client","error_codes":[7000222]}`)
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var logins atomic.Int32
			login, c := loginHost(t, func(w http.ResponseWriter, _ *http.Request) {
				if logins.Add(1) == 1 {
					// Of less than 5 minutes: the identity library's
					// cache holds it as expired already, as it holds a
					// token of an hour in its last 5 minutes.
					w.Header().Set("Content-Type", "application/json")
					fmt.Fprint(w, `{"token_type":"Bearer","expires_in":299,"access_token":"in-hand-token"}`)
					return
				}
				tc.answer(w)
			})
			secretFile := filepath.Join(t.TempDir(), "secret")
			writeSecretFile(t, secretFile, "in-hand-secret-0001", time.Now())
			cred, err := NewCredential(CredentialConfig{TenantID: simTenantID, ClientID: simClientID, ClientSecretFile: secretFile}, c, login.Client())
			if err != nil {
				t.Fatal(err)
			}
			var mu sync.Mutex
			now := time.Now()
			cred.now = func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
			advance := func(d time.Duration) { mu.Lock(); now = now.Add(d); mu.Unlock() }
			get := func() (string, error) {
				tok, err := cred.GetToken(context.Background(), policy.TokenRequestOptions{Scopes: []string{c.Scope}})
				return tok.Token, err
			}
			if tok, err := get(); err != nil || tok != "in-hand-token" {
				t.Fatalf("first GetToken = %q, %v", tok, err)
			}
			advance(minTokenReuse + time.Second) // past its reuse, 4 minutes left
			served := 0
			for range 10 {
				tok, err := get()
				switch {
				case tc.final && err == nil:
					t.Fatalf("GetToken after the refusal = %q, want the refusal", tok)
				case tc.final:
				case err != nil || tok != "in-hand-token":
					t.Fatalf("GetToken while the login host answers %s = %q, %v; want the token in hand", tc.name, tok, err)
				default:
					served++
				}
			}
			t.Logf("%s: %d of 10 calls served with the token in hand, %d login requests", tc.name, served, logins.Load())
			if tc.final {
				return
			}
			advance(299*time.Second - minTokenReuse - time.Second - lastTokenUse + time.Second)
			var te *TokenError
			if tok, err := get(); !errors.As(err, &te) || te.Status == 0 {
				t.Errorf("GetToken %v before the token's end = %q, %v; want the login host's answer", lastTokenUse-time.Second, tok, err)
			}
		})
	}
}

// TestTokenInHandServesWhileTheLoginHostHangs: while one call waits for
// a login host that does not answer, the others take the token in hand
// that is past its reuse but not near its end, at once. Before, each
// waited for that answer, its turn to ask, until its own time ran out:
// every call of the tenant failed "no answer from the login host".
func TestTokenInHandServesWhileTheLoginHostHangs(t *testing.T) {
	t.Parallel()
	cred, c, logins := hungAfterOneToken(t)
	get := func(d time.Duration) (string, error) {
		ctx, cancel := context.WithTimeout(context.Background(), d)
		defer cancel()
		tok, err := cred.GetToken(ctx, policy.TokenRequestOptions{Scopes: []string{c.Scope}})
		return tok.Token, err
	}
	if tok, err := get(5 * time.Second); err != nil || tok != "in-hand-token" {
		t.Fatalf("first GetToken = %q, %v", tok, err)
	}
	pastReuse(cred)
	asking := make(chan error, 1)
	go func() {
		_, err := get(3 * time.Second) // asks, and waits half its time
		asking <- err
	}()
	for logins.Load() < 2 {
		time.Sleep(time.Millisecond)
	}
	const calls = 10
	waited := 0
	for range calls {
		start := time.Now()
		tok, err := get(time.Second)
		if err != nil || tok != "in-hand-token" || time.Since(start) > 500*time.Millisecond {
			waited++
		}
	}
	t.Logf("%d of %d calls waited for the login host or failed while it hung", waited, calls)
	if waited != 0 {
		t.Errorf("%d of %d calls waited for the login host, want 0: the token in hand serves", waited, calls)
	}
	// The call that asked gave the login host half its time, and takes
	// the token in hand with the other half left for the API
	// (askTime).
	if err := <-asking; err != nil {
		t.Errorf("GetToken of the call that asked the hung login host = %v, want the token in hand", err)
	}
}

// hungAfterOneToken is a credential of a secret file whose login host
// gives one token, "in-hand-token", good for 299 s, and then answers no
// token request until the test ends; logins counts its token requests.
func hungAfterOneToken(t *testing.T) (*Credential, Cloud, *atomic.Int32) {
	t.Helper()
	var logins atomic.Int32
	hung := make(chan struct{})
	login, c := loginHost(t, func(w http.ResponseWriter, r *http.Request) {
		if logins.Add(1) == 1 {
			w.Header().Set("Content-Type", "application/json")
			fmt.Fprint(w, `{"token_type":"Bearer","expires_in":299,"access_token":"in-hand-token"}`)
			return
		}
		select {
		case <-hung:
		case <-r.Context().Done():
		}
	})
	t.Cleanup(func() { close(hung) })
	secretFile := filepath.Join(t.TempDir(), "secret")
	writeSecretFile(t, secretFile, "in-hand-secret-0002", time.Now())
	cred, err := NewCredential(CredentialConfig{TenantID: simTenantID, ClientID: simClientID, ClientSecretFile: secretFile}, c, login.Client())
	if err != nil {
		t.Fatal(err)
	}
	return cred, c, &logins
}

// pastReuse moves cred's clock past its token's reuse, 4 minutes before
// the end of a token got now for 299 s.
func pastReuse(cred *Credential) {
	later := time.Now().Add(minTokenReuse + time.Second)
	cred.mu.Lock()
	cred.now = func() time.Time { return later }
	cred.mu.Unlock()
}
