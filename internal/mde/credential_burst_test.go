package mde

import (
	"context"
	"sync"
	"testing"

	"github.com/contoso-secops/mde-offboard/internal/mde/mdesim"
)

// A burst of calls whose token the API refuses at once (it expired, or
// was revoked) gets one new token: each call that saw the same token
// refused shares the one rebuild, rather than sending its own token
// request to the login host.
func TestRefusedTokenBurstRenewsOnce(t *testing.T) {
	t.Parallel()
	const secret, calls = "burst-secret-0001", 40 // 81 calls: within the 100 a minute of GetMachine
	f := setupLogin(t, secret, secret)
	f.sim.AddMachine(simTenantID, mdesim.Machine{ID: testMachineID, ComputerDNSName: "pc.contoso.local"})
	cred := f.newCredential(t)
	client := NewClient(Options{Cloud: f.cloud, Credential: cred, HTTPClient: f.hc})
	if v := client.GetMachine(context.Background(), testMachineID); v.Class != Success {
		t.Fatalf("GetMachine: %s", v.Error())
	}
	f.sim.RevokeTokens(simTenantID)

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
