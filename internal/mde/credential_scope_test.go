package mde

import (
	"context"
	"strings"
	"testing"

	"github.com/contoso-secops/mde-offboard/internal/mde/mdesim"
)

// A government cloud's default scope is a guess (MDE-API.md: the
// government scopes are not documented): a tenant that does not know the
// resource gets AADSTS500011 from the login host. The error says that the
// scope was refused and names the setting that changes it, not the
// credentials, which are fine: an operator told that the credentials were
// refused rotates a secret that works.
func TestScopeRefusedByTheLoginHost(t *testing.T) {
	t.Parallel()
	const secret = "e2e-secret-0003"
	f := setupLogin(t, secret, secret)
	f.sim.AddMachine(simTenantID, mdesim.Machine{ID: testMachineID, ComputerDNSName: "pc.contoso.local"})
	c, err := ResolveCloud("gcc-high", f.cloud.APIBaseURL, f.cloud.AuthorityHost, "")
	if err != nil {
		t.Fatal(err)
	}
	f.cloud = c
	client := NewClient(Options{Cloud: f.cloud, Credential: f.newCredential(t), HTTPClient: f.hc})
	v := client.Offboard(context.Background(), testMachineID, "c")
	checkNoSecret(t, v, secret)
	if v.Class != Final || v.Reason != ReasonCredentialsRejected || v.Sent {
		t.Errorf("verdict %v/%v (sent %v), want final credentials_rejected, not sent", v.Class, v.Reason, v.Sent)
	}
	msg := v.Error()
	for _, want := range []string{"AADSTS500011", "scope"} {
		if !strings.Contains(msg, want) {
			t.Errorf("Error() = %q, want %q in it", msg, want)
		}
	}
	if strings.Contains(msg, "refused the credentials") {
		t.Errorf("Error() = %q: says the credentials were refused, when the scope was", msg)
	}
}
