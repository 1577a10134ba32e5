package mde

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
)

// TestTokenInHandNotServedAfterARefusal: once the login host refused
// the credentials, the token in hand past its reuse is no longer handed
// out, not even to the calls that come while another asks it again. A
// federated credential taken off the application (or a managed
// identity, an environment's secret) is not rebuilt as a changed file
// is, and keeps its token: each time the refusal's hold was over, the
// calls that came while one asked again were sent the token of the
// refused credentials, and succeeded, while the others were failed
// unauthorized.
func TestTokenInHandNotServedAfterARefusal(t *testing.T) {
	t.Parallel()
	var logins atomic.Int32
	answer := make(chan struct{}) // lets the third login request be answered
	login, c := loginHost(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		switch logins.Add(1) {
		case 1:
			fmt.Fprint(w, `{"token_type":"Bearer","expires_in":299,"access_token":"in-hand-token"}`)
			return
		case 2:
		default:
			select {
			case <-answer:
			case <-r.Context().Done():
				return
			}
		}
		w.WriteHeader(http.StatusBadRequest)
		fmt.Fprint(w, `{"error":"invalid_grant","error_codes":[70021]}`)
	})
	path := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(path, []byte("eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJwb2QifQ.sig-0001"), 0o600); err != nil {
		t.Fatal(err)
	}
	cred, err := NewCredential(CredentialConfig{TenantID: simTenantID, ClientID: simClientID, WorkloadIdentity: true, TokenFile: path}, c, login.Client())
	if err != nil {
		t.Fatal(err)
	}
	var now atomic.Pointer[time.Time]
	start := time.Now()
	now.Store(&start)
	cred.mu.Lock()
	cred.now = func() time.Time { return *now.Load() }
	cred.mu.Unlock()
	advance := func(d time.Duration) { later := now.Load().Add(d); now.Store(&later) }
	get := func(d time.Duration) (string, error) {
		ctx, cancel := context.WithTimeout(context.Background(), d)
		defer cancel()
		tok, err := cred.GetToken(ctx, policy.TokenRequestOptions{Scopes: []string{c.Scope}})
		return tok.Token, err
	}
	if tok, err := get(5 * time.Second); err != nil || tok != "in-hand-token" {
		t.Fatalf("first GetToken = %q, %v", tok, err)
	}
	advance(minTokenReuse + time.Second) // past its reuse, 4 minutes left
	var te *TokenError
	if tok, err := get(5 * time.Second); !errors.As(err, &te) || !te.Final {
		t.Fatalf("GetToken refused = %q, %v; want the refusal", tok, err)
	}
	advance(refusalHold + time.Second) // the hold over, 3 minutes left
	asking := make(chan error, 1)
	go func() {
		_, err := get(5 * time.Second) // asks again, and waits for the answer
		asking <- err
	}()
	for logins.Load() < 3 {
		time.Sleep(time.Millisecond)
	}
	const calls = 10
	served := 0
	for range calls {
		if tok, _ := get(50 * time.Millisecond); tok != "" {
			served++
		}
	}
	close(answer)
	t.Logf("%d of %d calls served a token while the refused credentials were asked again", served, calls)
	if served != 0 {
		t.Errorf("%d of %d calls served the token of the refused credentials, want 0", served, calls)
	}
	if err := <-asking; !errors.As(err, &te) || !te.Final {
		t.Errorf("GetToken asking again = %v, want the refusal", err)
	}
	if tok, err := get(5 * time.Second); !errors.As(err, &te) || !te.Final {
		t.Errorf("GetToken after the second refusal = %q, %v; want the refusal", tok, err)
	}
}
