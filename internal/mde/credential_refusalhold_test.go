package mde

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
)

// TestRefusedSecretHeld: after the login host refused the tenant's
// client secret, the tenant's other token requests within refusalHold
// get the same refusal without sending the secret again; once the hold
// is over the login host is asked again, and a secret file holding
// another secret ends the hold at once, even rewritten in place with
// the size and time of the refused one. A queue of requests sent the
// refused secret once each, a burst of failed sign-ins.
func TestRefusedSecretHeld(t *testing.T) {
	t.Parallel()
	const refused, rotated, requests = "held-secret-wrong-01", "held-secret-right-02", 50
	var logins atomic.Int32
	login, c := loginHost(t, func(w http.ResponseWriter, r *http.Request) {
		logins.Add(1)
		w.Header().Set("Content-Type", "application/json")
		if r.PostFormValue("client_secret") != rotated {
			w.WriteHeader(http.StatusUnauthorized)
			fmt.Fprint(w, `{"error":"invalid_client","error_description":"AADSTS7000215: Invalid client secret provided.","error_codes":[7000215],"correlation_id":"4b5c6d7e-0000-4000-8000-123456789abc"}`)
			return
		}
		fmt.Fprint(w, `{"token_type":"Bearer","expires_in":3599,"access_token":"after-the-rotation"}`)
	})
	secretFile := filepath.Join(t.TempDir(), "secret")
	written := time.Now().Add(-time.Hour)
	writeSecretFile(t, secretFile, refused, written)
	get, advance := secretFileTokens(t, login, c, secretFile)
	refusal := func(err error) bool {
		var te *TokenError
		return errors.As(err, &te) && te.Final && te.AADSTS == "AADSTS7000215" && te.RetryAfter == 0
	}

	// The tenant's queued requests, a few at a time.
	var wg sync.WaitGroup
	var notRefused atomic.Int32
	for range requests {
		wg.Go(func() {
			if err := get(); !refusal(err) {
				notRefused.Add(1)
			}
			checkNoSecret(t, get(), refused, rotated)
		})
	}
	wg.Wait()
	if n := notRefused.Load(); n != 0 {
		t.Errorf("%d of %d token requests not answered with the refusal", n, requests)
	}
	if n := logins.Load(); n != 1 {
		t.Errorf("login requests for %d token requests within the hold = %d, want 1", 2*requests, n)
	}

	advance(refusalHold)
	if err := get(); !refusal(err) {
		t.Errorf("GetToken after the hold: %v, want the refusal", err)
	}
	if n := logins.Load(); n != 2 {
		t.Errorf("login requests once the hold is over = %d, want 2", n)
	}

	// Rewritten in place, same length and time: only its content tells.
	if len(rotated) != len(refused) {
		t.Fatal("the secrets' lengths differ")
	}
	writeSecretFile(t, secretFile, rotated, written)
	if st, err := os.Stat(secretFile); err != nil || st.Size() != int64(len(refused)+1) {
		t.Fatalf("secret file: %v", err)
	}
	advance(time.Second)
	if err := get(); err != nil {
		t.Errorf("GetToken once the file holds another secret, within the hold: %v", err)
	}
	if n := logins.Load(); n != 3 {
		t.Errorf("login requests = %d, want 3", n)
	}
}

// TestRefusedFederatedTokenRewrittenInPlace: a federated token file
// holding another token ends the refusal's hold at once, even rewritten
// in place with the size and time of the refused one. The token read was
// kept, the file unchanged to its stamp: the refused token answered the
// hold, and was sent again once it was over, up to tokenFileReuse after
// it was read.
func TestRefusedFederatedTokenRewrittenInPlace(t *testing.T) {
	t.Parallel()
	const refused, rotated = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJvbGQifQ.held-0001", "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJuZXcifQ.held-0002"
	var logins atomic.Int32
	login, c := loginHost(t, func(w http.ResponseWriter, r *http.Request) {
		logins.Add(1)
		w.Header().Set("Content-Type", "application/json")
		if r.PostFormValue("client_assertion") != rotated {
			w.WriteHeader(http.StatusBadRequest)
			fmt.Fprint(w, `{"error":"invalid_client","error_description":"AADSTS700024: Client assertion is not within its valid time range.","error_codes":[700024]}`)
			return
		}
		fmt.Fprint(w, `{"token_type":"Bearer","expires_in":3599,"access_token":"after-the-rotation"}`)
	})
	path := filepath.Join(t.TempDir(), "token")
	written := time.Now().Add(-time.Hour)
	writeInPlace := func(token string) {
		t.Helper()
		if err := os.WriteFile(path, []byte(token), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Chtimes(path, written, written); err != nil {
			t.Fatal(err)
		}
	}
	writeInPlace(refused)
	cred, err := NewCredential(CredentialConfig{TenantID: simTenantID, ClientID: simClientID, WorkloadIdentity: true, TokenFile: path}, c, login.Client())
	if err != nil {
		t.Fatal(err)
	}
	get := func() error {
		_, err := cred.GetToken(context.Background(), policy.TokenRequestOptions{Scopes: []string{c.Scope}})
		return err
	}
	for range 2 {
		var te *TokenError
		if err := get(); !errors.As(err, &te) || !te.Final || te.AADSTS != "AADSTS700024" {
			t.Fatalf("GetToken with the refused token: %v, want the refusal", err)
		}
	}
	if n := logins.Load(); n != 1 {
		t.Fatalf("login requests within the hold = %d, want 1", n)
	}

	if len(rotated) != len(refused) {
		t.Fatal("the tokens' lengths differ")
	}
	writeInPlace(rotated)
	if err := get(); err != nil {
		t.Errorf("GetToken once the file holds another token, within the hold: %v", err)
	}
	if n := logins.Load(); n != 2 {
		t.Errorf("login requests = %d, want 2", n)
	}
}
