package mde

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/contoso-secops/mde-offboard/internal/mde/mdesim"
)

// The API's dates have at most seven digits after the second, and whether
// its filter parser takes nine is not documented: the cutoff is sent in
// whole seconds, rounded up, so that no device last seen before the
// cutoff is left out (the plan checks each device's lastSeen itself).
func TestInactiveFilterCutoffInWholeSeconds(t *testing.T) {
	cutoff := time.Date(2026, 10, 7, 10, 56, 30, 123456789, time.FixedZone("CEST", 2*3600))
	got := InactiveFilter(cutoff, nil, nil)
	if want := "lastSeen lt 2026-10-07T08:56:31Z and onboardingStatus eq 'Onboarded'"; got != want {
		t.Errorf("filter %q, want %q", got, want)
	}
	if got, want := InactiveFilter(cutoff.Truncate(time.Second), nil, nil), "lastSeen lt 2026-10-07T08:56:30Z and onboardingStatus eq 'Onboarded'"; got != want {
		t.Errorf("a whole second: filter %q, want %q", got, want)
	}
	got = InactiveFilter(cutoff, []string{"Inactive"}, []string{"Windows10", "Linux"})
	if want := "lastSeen lt 2026-10-07T08:56:31Z and onboardingStatus eq 'Onboarded' and healthStatus eq 'Inactive' and (osPlatform eq 'Windows10' or osPlatform eq 'Linux')"; got != want {
		t.Errorf("filter %q, want %q", got, want)
	}
}

// The inventory lists the devices Device Discovery found beside those
// onboarded (onboardingStatus CanBeOnboarded, Unsupported,
// InsufficientInfo): a device that was never onboarded has nothing to
// offboard, and the inactive devices' filter leaves it out.
func TestInactiveFilterOnboardedOnly(t *testing.T) {
	t.Parallel()
	f := setupLogin(t, "inactive-secret", "inactive-secret")
	long := time.Now().Add(-200 * 24 * time.Hour)
	const onboarded = "aa00000000000000000000000000000000000001"
	f.sim.AddMachine(simTenantID, mdesim.Machine{ID: onboarded, ComputerDNSName: "pc-1.contoso.local", LastSeen: long, HealthStatus: "Inactive"})
	for i, status := range []string{"CanBeOnboarded", "Unsupported", "InsufficientInfo"} {
		f.sim.AddMachine(simTenantID, mdesim.Machine{
			ID: fmt.Sprintf("bb%038x", i+1), ComputerDNSName: fmt.Sprintf("printer-%d.contoso.local", i+1),
			LastSeen: long, HealthStatus: "Inactive", OnboardingStatus: status,
		})
	}
	client := NewClient(Options{Cloud: f.cloud, Credential: f.newCredential(t), HTTPClient: f.hc})
	v := client.ListMachines(context.Background(), InactiveFilter(time.Now().Add(-90*24*time.Hour), nil, nil), MaxPage, 0)
	if v.Class != Success {
		t.Fatalf("ListMachines: %v %s", v.Class, v.Error())
	}
	machines, err := ParseMachines(v.Body)
	if err != nil {
		t.Fatalf("ParseMachines: %v", err)
	}
	var ids []string
	for _, m := range machines {
		ids = append(ids, m.ID)
	}
	if len(ids) != 1 || ids[0] != onboarded {
		t.Errorf("inactive devices %v, want only the onboarded %s", ids, onboarded)
	}
}
