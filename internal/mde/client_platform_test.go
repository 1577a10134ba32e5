package mde

import (
	"context"
	"crypto/tls"
	"net/http"
	"path/filepath"
	"testing"
	"time"

	"github.com/contoso-secops/mde-offboard/internal/mde/mdesim"
	"github.com/contoso-secops/mde-offboard/offboard"
)

// A device of an old Windows release (Windows 7, Server 2008 R2), which
// no version of the Offboard machine API's documentation lists, is
// refused 400 OsPlatformNotSupported by the simulator as by the service:
// the offboard is final, unsupported_os, and not a success.
func TestClientOldWindowsUnsupported(t *testing.T) {
	t.Parallel()
	const secret = "platform-secret-0001"
	f := setupLogin(t, secret, secret)
	client := NewClient(Options{Cloud: f.cloud, Credential: f.newCredential(t), HTTPClient: f.hc})
	for i, platform := range []string{"Windows7", "WindowsServer2008R2"} {
		id := testMachineID[:39] + string(rune('a'+i))
		f.sim.AddMachine(simTenantID, mdesim.Machine{ID: id, ComputerDNSName: platform + ".contoso.local", OSPlatform: platform})
		v := client.Offboard(context.Background(), id, "retired")
		if v.Class != Final || v.Reason != ReasonUnsupportedOS || v.FailureCode != offboard.CodeUnsupportedOS || v.APICode() != "OsPlatformNotSupported" {
			t.Errorf("%s: verdict %v/%v, code %q, API code %q (%s); want final unsupported_os, OsPlatformNotSupported",
				platform, v.Class, v.Reason, v.FailureCode, v.APICode(), v.Error())
		}
	}
	if n := len(f.sim.Actions(simTenantID)); n != 0 {
		t.Errorf("%d actions made, want none", n)
	}
}

// A Windows 10 device of a version before 1703 is refused 400
// ClientVersionNotSupported: the offboard is final,
// unsupported_client_version.
func TestClientWindows10BeforeVersion1703Unsupported(t *testing.T) {
	t.Parallel()
	const secret = "platform-secret-0002"
	f := setupLogin(t, secret, secret)
	client := NewClient(Options{Cloud: f.cloud, Credential: f.newCredential(t), HTTPClient: f.hc})
	f.sim.AddMachine(simTenantID, mdesim.Machine{ID: testMachineID, ComputerDNSName: "w10.contoso.local", OSPlatform: "Windows10", Version: "1607"})
	v := client.Offboard(context.Background(), testMachineID, "retired")
	if v.Class != Final || v.Reason != ReasonUnsupportedClient || v.FailureCode != offboard.CodeUnsupportedClient || v.APICode() != "ClientVersionNotSupported" {
		t.Errorf("verdict %v/%v, code %q, API code %q (%s); want final unsupported_client_version, ClientVersionNotSupported",
			v.Class, v.Reason, v.FailureCode, v.APICode(), v.Error())
	}
	if n := len(f.sim.Actions(simTenantID)); n != 0 {
		t.Errorf("%d actions made, want none", n)
	}
}

// The List machines API documents a list of no device as 404 Not Found:
// against the simulator answering so, a name no device bears is found
// on no device and a page past the inventory reads as empty, not as a
// failure.
func TestClientEmptyMachineListNotFound(t *testing.T) {
	t.Parallel()
	const secret = "platform-secret-0003"
	sim := mdesim.New(mdesim.Options{EmptyMachineListNotFound: true})
	sim.AddTenant(mdesim.Tenant{TenantID: simTenantID, ClientID: simClientID, ClientSecret: secret})
	sim.AddMachine(simTenantID, mdesim.Machine{ID: testMachineID, ComputerDNSName: "pc.contoso.local"})
	base := sim.StartTLS()
	t.Cleanup(sim.Close)
	f := &loginFixture{sim: sim}
	tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: sim.CertPool()}}
	t.Cleanup(tr.CloseIdleConnections)
	var err error
	if f.cloud, err = ResolveCloud("commercial", base, base, ""); err != nil {
		t.Fatal(err)
	}
	f.hc = &http.Client{Transport: tr}
	f.secretFile = filepath.Join(t.TempDir(), "client-secret")
	writeSecretFile(t, f.secretFile, secret, time.Now())
	f.cc = CredentialConfig{TenantID: simTenantID, ClientID: simClientID, ClientSecretFile: f.secretFile}
	client := NewClient(Options{Cloud: f.cloud, Credential: f.newCredential(t), HTTPClient: f.hc})

	v := client.FindMachinesByName(context.Background(), "nobody.contoso.local")
	if v.Class != Success || v.Named == nil || v.Named.Err != nil || v.Named.Count != 0 || v.Status != http.StatusNotFound {
		t.Errorf("FindMachinesByName of a name no device bears: %v (%s), named %+v; want success, no device, status 404", v.Class, v.Error(), v.Named)
	}
	v = client.ListMachines(context.Background(), "", MaxPage, 1)
	if v.Class != Success {
		t.Fatalf("ListMachines past the inventory: %v (%s), want success", v.Class, v.Error())
	}
	if ms, more, err := ParseMachineList(v.Body); err != nil || len(ms) != 0 || more {
		t.Errorf("ListMachines past the inventory: %d devices, more %v, %v; want none", len(ms), more, err)
	}
	if v = client.FindMachinesByName(context.Background(), "pc.contoso.local"); v.Class != Success || v.Named == nil || v.Named.Count != 1 {
		t.Errorf("FindMachinesByName of pc: %v (%s), want the one device", v.Class, v.Error())
	}
}
