package mde

import (
	"context"
	"testing"

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
