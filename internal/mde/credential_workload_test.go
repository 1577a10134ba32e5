package mde

import (
	"crypto/tls"
	"net/http"
	"os"
	"path/filepath"
	"testing"

	"github.com/contoso-secops/mde-offboard/internal/mde/mdesim"
)

// A federated token file rotated after the login host refused the token
// it held (expired, as a short-lived projected token can be before the
// file is read again) is read again at the next token request, not
// after tokenFileReuse: meanwhile every call would fail although a
// valid token is on disk.
func TestWorkloadIdentityTokenFileRotatedAfterARefusal(t *testing.T) {
	t.Parallel()
	sim := mdesim.New(mdesim.Options{})
	const old, rotated = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJvbGQifQ.old-0001", "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJuZXcifQ.new-0002"
	sim.AddTenant(mdesim.Tenant{TenantID: simTenantID, ClientID: simClientID, FederatedToken: rotated})
	base := sim.StartTLS()
	t.Cleanup(sim.Close)
	tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: sim.CertPool(), MinVersion: tls.VersionTLS12}}
	t.Cleanup(tr.CloseIdleConnections)
	c, err := ResolveCloud("commercial", base, base, "")
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(path, []byte(old), 0o600); err != nil {
		t.Fatal(err)
	}
	cred, err := NewCredential(CredentialConfig{TenantID: simTenantID, ClientID: simClientID, WorkloadIdentity: true, TokenFile: path}, c, &http.Client{Transport: tr})
	if err != nil {
		t.Fatal(err)
	}
	f := &loginFixture{cloud: c}
	if _, err := f.getToken(cred); err == nil {
		t.Fatal("GetToken with the expired federated token: no error")
	}
	replaceFile(t, path, []byte(rotated))
	if tok, err := f.getToken(cred); err != nil || tok == "" {
		t.Errorf("GetToken after the token file was rotated: err = %v, empty token %v", err, tok == "")
	}
}
