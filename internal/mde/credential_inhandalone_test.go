package mde

import (
	"context"
	"fmt"
	"net/http"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
)

// TestTokenInHandServesALoneCallWhileTheLoginHostHangs: a call that
// asks a login host that does not answer, with a token in hand past its
// reuse, gives it half its time and then takes that token, the other
// half left for the API. Before, only the calls that came while another
// asked took it: a lone call (a quiet tenant's request, a tracker's
// poll, one at a time) waited for the login host its whole time and
// failed, each attempt, the token in hand unused, and the request ended
// api_error after six.
func TestTokenInHandServesALoneCallWhileTheLoginHostHangs(t *testing.T) {
	t.Parallel()
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
	writeSecretFile(t, secretFile, "in-hand-secret-0004", time.Now())
	cred, err := NewCredential(CredentialConfig{TenantID: simTenantID, ClientID: simClientID, ClientSecretFile: secretFile}, c, login.Client())
	if err != nil {
		t.Fatal(err)
	}
	get := func(d time.Duration) (string, time.Duration, error) {
		ctx, cancel := context.WithTimeout(context.Background(), d)
		defer cancel()
		start := time.Now()
		tok, err := cred.GetToken(ctx, policy.TokenRequestOptions{Scopes: []string{c.Scope}})
		return tok.Token, time.Since(start), err
	}
	if tok, _, err := get(5 * time.Second); err != nil || tok != "in-hand-token" {
		t.Fatalf("first GetToken = %q, %v", tok, err)
	}
	later := time.Now().Add(minTokenReuse + time.Second) // past its reuse, 4 minutes left
	cred.mu.Lock()
	cred.now = func() time.Time { return later }
	cred.mu.Unlock()
	const calls = 3
	served := 0
	for range calls {
		tok, took, err := get(time.Second)
		t.Logf("lone call: %q after %v, %v", tok, took.Round(10*time.Millisecond), err)
		if err == nil && tok == "in-hand-token" && took < 900*time.Millisecond {
			served++
		}
	}
	t.Logf("%d of %d lone calls served the token in hand with time left, %d login requests", served, calls, logins.Load())
	if served != calls {
		t.Errorf("%d of %d lone calls served the token in hand with time left for the API, want %d", served, calls, calls)
	}
}
