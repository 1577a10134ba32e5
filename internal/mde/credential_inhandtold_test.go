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

// TestTokenInHandServingIsTold: while the token in hand serves because
// the login host cannot give the next one, why is told, at most once a
// minute. Before, nothing showed: the tenant's calls succeeded with it,
// and failed all at once a minute before its end, minutes later for a
// token of an hour, hours later for a long-lived one past its
// refresh_in, the login host failing all along.
func TestTokenInHandServingIsTold(t *testing.T) {
	t.Parallel()
	var logins atomic.Int32
	login, c := loginHost(t, func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		if logins.Add(1) == 1 {
			fmt.Fprint(w, `{"token_type":"Bearer","expires_in":299,"access_token":"in-hand-token"}`)
			return
		}
		w.WriteHeader(http.StatusServiceUnavailable)
		fmt.Fprint(w, `{"error":"temporarily_unavailable","error_codes":[90033]}`)
	})
	secretFile := filepath.Join(t.TempDir(), "secret")
	writeSecretFile(t, secretFile, "in-hand-secret-0003", time.Now())
	cred, err := NewCredential(CredentialConfig{TenantID: simTenantID, ClientID: simClientID, ClientSecretFile: secretFile}, c, login.Client())
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var told []error
	cred.OnTokenInHand(func(err error) { mu.Lock(); told = append(told, err); mu.Unlock() })
	var now atomic.Pointer[time.Time]
	start := time.Now()
	now.Store(&start)
	cred.mu.Lock()
	cred.now = func() time.Time { return *now.Load() }
	cred.mu.Unlock()
	advance := func(d time.Duration) { later := now.Load().Add(d); now.Store(&later) }
	get := func() (string, error) {
		tok, err := cred.GetToken(context.Background(), policy.TokenRequestOptions{Scopes: []string{c.Scope}})
		return tok.Token, err
	}
	if tok, err := get(); err != nil || tok != "in-hand-token" {
		t.Fatalf("first GetToken = %q, %v", tok, err)
	}
	toldAfter := func(calls int) int {
		t.Helper()
		for range calls {
			if tok, err := get(); err != nil || tok != "in-hand-token" {
				t.Fatalf("GetToken while the login host answers 503 = %q, %v; want the token in hand", tok, err)
			}
		}
		mu.Lock()
		defer mu.Unlock()
		return len(told)
	}
	if n := toldAfter(10); n != 0 {
		t.Fatalf("told %d times while the token was within its reuse, want 0", n)
	}
	advance(minTokenReuse + time.Second) // past its reuse, 4 minutes left
	first := toldAfter(10)
	advance(30 * time.Second)
	second := toldAfter(10)
	advance(31 * time.Second)
	third := toldAfter(10)
	t.Logf("told %d, %d, %d times after 10, 20 and 30 calls served the token in hand over a minute", first, second, third)
	if first != 1 || second != 1 || third != 2 {
		t.Errorf("told %d, %d, %d times, want 1, 1, 2: once a minute", first, second, third)
	}
	mu.Lock()
	defer mu.Unlock()
	for _, err := range told {
		var te *TokenError
		if !errors.As(err, &te) || te.Status != http.StatusServiceUnavailable {
			t.Errorf("told %v, want the login host's 503", err)
		}
	}
}
