package mde

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"

	"github.com/contoso-secops/mde-offboard/internal/mde/mdesim"
)

// A burst of calls whose token the API refuses at once (it expired, or
// was revoked) gets one new token: each call that saw the same token
// refused shares the one rebuild, rather than sending its own token
// request to the login host.
func TestRefusedTokenBurstRenewsOnce(t *testing.T) {
	t.Parallel()
	const secret, calls = "burst-secret-0001", 40 // 81 calls: within the 100 a minute of GetMachine
	f, cred, client := revokedAfterARead(t, secret)

	// Every call has its 401 before any asks for a new token: the worst
	// case of a burst.
	var refused, done sync.WaitGroup
	refused.Add(calls)
	errs := make(chan string, calls)
	for range calls {
		done.Add(1)
		go func() {
			defer done.Done()
			v := client.GetMachine(context.Background(), testMachineID)
			refused.Done()
			refused.Wait()
			if !v.RefreshToken {
				errs <- "first attempt: " + v.Error() + ", want a 401"
				return
			}
			if err := cred.TokenRefused(v); err != nil {
				checkNoSecret(t, err, secret)
				errs <- "TokenRefused: " + err.Error()
				return
			}
			if v := client.GetMachine(context.Background(), testMachineID); v.Class != Success {
				errs <- "after a new token: " + v.Error()
			}
		}()
	}
	done.Wait()
	close(errs)
	for e := range errs {
		t.Error(e)
	}
	// The first token, and one after the burst.
	if n := f.sim.TokenRequests(simTenantID); n != 2 {
		t.Errorf("token requests = %d for a burst of %d refused calls, want 2", n, calls)
	}
}

// The calls that find the credential stale (its file changed, or the
// login host refused what it holds) build it again once between them:
// each build is a new token cache, and each one asked makes its own
// token request.
func TestStaleCredentialBurstRebuildsOnce(t *testing.T) {
	t.Parallel()
	const calls = 40
	now := time.Date(2026, 12, 2, 8, 0, 0, 0, time.UTC)
	clock := func() time.Time { return now }
	var builds atomic.Int32
	release := make(chan struct{})
	cred := &Credential{host: "login.example", now: clock, build: func() (azcore.TokenCredential, error) {
		if builds.Add(1) > 1 {
			<-release
		}
		return fixedCredential{azcore.AccessToken{Token: "token", ExpiresOn: now.Add(time.Hour)}}, nil
	}}
	if err := cred.refresh(); err != nil {
		t.Fatal(err)
	}
	cred.reload = true // as after the login host refused its secret

	var done sync.WaitGroup
	for range calls {
		done.Add(1)
		go func() {
			defer done.Done()
			if _, err := cred.GetToken(context.Background(), policy.TokenRequestOptions{Scopes: []string{"https://api.example/.default"}}); err != nil {
				t.Errorf("GetToken: %v", err)
			}
		}()
	}
	// The first rebuild is held until every call could have begun its own.
	for deadline := time.Now().Add(200 * time.Millisecond); builds.Load() <= calls && time.Now().Before(deadline); {
		time.Sleep(time.Millisecond)
	}
	close(release)
	done.Wait()
	if n := builds.Load() - 1; n != 1 {
		t.Errorf("%d rebuilds for %d calls that found the credential stale, want 1", n, calls)
	}
}

// fixedCredential hands out one token.
type fixedCredential struct{ tok azcore.AccessToken }

func (c fixedCredential) GetToken(context.Context, policy.TokenRequestOptions) (azcore.AccessToken, error) {
	return c.tok, nil
}

// A renewal that failed (the secret file read empty while it was being
// rewritten) is not the answer for good to the calls that saw the same
// token refused: one that comes once the file is right again renews the
// credential, where it failed its request as unauthorized.
func TestRefusedTokenRenewedAfterAFailedRenewal(t *testing.T) {
	t.Parallel()
	const secret = "renew-secret-0002"
	f, cred, client := revokedAfterARead(t, secret)
	first, late := client.GetMachine(context.Background(), testMachineID), client.GetMachine(context.Background(), testMachineID)
	if !first.RefreshToken || !late.RefreshToken {
		t.Fatalf("after the revocation: %s, %s; want 401s", first.Error(), late.Error())
	}
	writeSecretFile(t, f.secretFile, "", time.Now().Add(time.Minute))
	if err := cred.TokenRefused(first); err == nil {
		t.Fatal("TokenRefused with the secret file empty: no error")
	}
	writeSecretFile(t, f.secretFile, secret, time.Now().Add(2*time.Minute))
	if err := cred.TokenRefused(late); err != nil {
		t.Fatalf("TokenRefused once the file is right again: %v", err)
	}
	if v := client.GetMachine(context.Background(), testMachineID); v.Class != Success {
		t.Errorf("after the renewal: %s", v.Error())
	}
}

// revokedAfterARead sets up a tenant with secret, reads a device with a
// token, and revokes the tenant's tokens.
func revokedAfterARead(t *testing.T, secret string) (*loginFixture, *Credential, *Client) {
	t.Helper()
	f := setupLogin(t, secret, secret)
	f.sim.AddMachine(simTenantID, mdesim.Machine{ID: testMachineID, ComputerDNSName: "pc.contoso.local"})
	cred := f.newCredential(t)
	client := NewClient(Options{Cloud: f.cloud, Credential: cred, HTTPClient: f.hc})
	if v := client.GetMachine(context.Background(), testMachineID); v.Class != Success {
		t.Fatalf("GetMachine: %s", v.Error())
	}
	f.sim.RevokeTokens(simTenantID)
	return f, cred, client
}
