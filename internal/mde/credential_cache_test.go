package mde

import (
	"context"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
)

// countingCredential hands out numbered tokens that expire an hour after
// the test's clock.
type countingCredential struct {
	now       func() time.Time
	calls     int
	refreshOn time.Duration
}

func (c *countingCredential) GetToken(context.Context, policy.TokenRequestOptions) (azcore.AccessToken, error) {
	c.calls++
	tok := azcore.AccessToken{Token: "token-" + string(rune('a'+c.calls)), ExpiresOn: c.now().Add(time.Hour)}
	if c.refreshOn > 0 {
		tok.RefreshOn = c.now().Add(c.refreshOn)
	}
	return tok, nil
}

// TestCredentialCachesTheToken: a token is taken from the library once and
// handed out until five minutes before it expires, or until the login host
// asked for it to be refreshed, or the credential was rebuilt; a request
// with claims always goes to the library.
func TestCredentialCachesTheToken(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 12, 2, 8, 0, 0, 0, time.UTC)
	clock := func() time.Time { return now }
	under := &countingCredential{now: clock}
	cred := &Credential{host: "login.example", now: clock, build: func() (azcore.TokenCredential, error) { return under, nil }}
	if err := cred.refresh(); err != nil {
		t.Fatal(err)
	}
	opts := policy.TokenRequestOptions{Scopes: []string{"https://api.example/.default"}}
	get := func() string {
		t.Helper()
		tok, err := cred.GetToken(t.Context(), opts)
		if err != nil {
			t.Fatal(err)
		}
		return tok.Token
	}

	first := get()
	for range 100 {
		if got := get(); got != first {
			t.Fatalf("token changed to %q while the first is valid", got)
		}
	}
	if under.calls != 1 {
		t.Fatalf("library asked %d times for 101 tokens, want 1", under.calls)
	}

	now = now.Add(54 * time.Minute) // 6 minutes left: still handed out
	if get(); under.calls != 1 {
		t.Errorf("library asked again with 6 minutes left")
	}
	now = now.Add(2 * time.Minute) // 4 minutes left: a new one
	if got := get(); got == first || under.calls != 2 {
		t.Errorf("with 4 minutes left: token %q, %d library calls; want a new token, 2 calls", got, under.calls)
	}

	if err := cred.Invalidate(); err != nil {
		t.Fatal(err)
	}
	if get(); under.calls != 3 {
		t.Errorf("after Invalidate: %d library calls, want 3", under.calls)
	}

	withClaims := opts
	withClaims.Claims = `{"access_token":{}}`
	if _, err := cred.GetToken(t.Context(), withClaims); err != nil {
		t.Fatal(err)
	}
	if under.calls != 4 {
		t.Errorf("a request with claims was answered from the cache")
	}
	other := policy.TokenRequestOptions{Scopes: []string{"https://other.example/.default"}}
	if _, err := cred.GetToken(t.Context(), other); err != nil {
		t.Fatal(err)
	}
	if under.calls != 5 {
		t.Errorf("a request for other scopes was answered from the cache")
	}

	under.refreshOn = 10 * time.Minute
	if err := cred.Invalidate(); err != nil {
		t.Fatal(err)
	}
	get()
	now = now.Add(11 * time.Minute) // past RefreshOn, far from expiry
	if get(); under.calls != 7 {
		t.Errorf("past the token's refresh time: %d library calls, want 7", under.calls)
	}
}
