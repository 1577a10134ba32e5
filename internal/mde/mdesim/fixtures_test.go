package mdesim_test

import (
	"net/http"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/contoso-secops/mde-offboard/internal/mde/mdesim"
)

// TestMachineGuardFields: tags, device group and lastSeen are served as
// set, by GET and in lists; a device in no group has a null group name.
func TestMachineGuardFields(t *testing.T) {
	s := newSim(t, mdesim.Options{})
	const tier0 = "7777756789abcdef0123456789abcdef01234567"
	s.AddMachine(tenantA, mdesim.Machine{
		ID: tier0, ComputerDNSName: "dc01.contoso.local", MachineTags: []string{"DoNotOffboard", "tier0"},
		RbacGroupName: "Tier 0 servers", RbacGroupID: 7, LastSeen: t0.Add(-100 * 24 * time.Hour),
	})
	tok := s.token(t, tenantA, clientA, secretA)

	m := s.do(t, http.MethodGet, "/api/machines/"+tier0, tok, "", "").object(t)
	if !reflect.DeepEqual(m["machineTags"], []any{"DoNotOffboard", "tier0"}) || m["rbacGroupName"] != "Tier 0 servers" || m["rbacGroupId"] != 7.0 {
		t.Errorf("GET machine = %v", m)
	}
	if m["lastSeen"] != "2024-11-21T12:00:00.1234567Z" {
		t.Errorf("lastSeen = %v", m["lastSeen"])
	}
	list := s.do(t, http.MethodGet, "/api/machines?"+filterQuery("computerDnsName eq 'dc01.contoso.local'"), tok, "", "").object(t)
	if v, _ := list["value"].([]any); len(v) != 1 || v[0].(map[string]any)["rbacGroupName"] != "Tier 0 servers" {
		t.Errorf("list = %v", list)
	}
	plain := s.do(t, http.MethodGet, "/api/machines/"+winID, tok, "", "").object(t)
	if g, ok := plain["rbacGroupName"]; !ok || g != nil || !reflect.DeepEqual(plain["machineTags"], []any{}) {
		t.Errorf("device in no group: rbacGroupName = %v, machineTags = %v", g, plain["machineTags"])
	}
}

func TestFixtures(t *testing.T) {
	const file = `
tenants:
  - tenantId: 33333333-3333-4333-8333-333333333333
    clientId: cccccccc-cccc-4ccc-8ccc-cccccccccccc
    clientSecret: s3cret~C
    machines:
      - id: 8888856789ABCDEF0123456789ABCDEF01234567
        computerDnsName: dc01.contoso.local
        machineTags: [DoNotOffboard]
        rbacGroupName: Tier 0 servers
        rbacGroupId: 7
        lastSeenAgo: 90d
      - computerDnsName: pc-9.contoso.local
        osPlatform: Linux
        lastSeen: 2025-01-01T00:00:00Z
      - computerDnsName: pc-10.contoso.local
        osPlatform: Windows10
        version: "1607"
`
	f, err := mdesim.ParseFixtures([]byte(file))
	if err != nil {
		t.Fatal(err)
	}
	s := newSim(t, mdesim.Options{})
	s.AddFixtures(f)
	got := s.Machines("33333333-3333-4333-8333-333333333333")
	if len(got) != 3 {
		t.Fatalf("machines = %+v", got)
	}
	if w10 := got[2]; w10.OSPlatform != "Windows10" || w10.Version != "1607" {
		t.Errorf("pc-10 = %+v, want a Windows10 of version 1607", w10)
	}
	dc := got[0]
	if dc.ID != "8888856789abcdef0123456789abcdef01234567" || dc.RbacGroupName != "Tier 0 servers" || dc.RbacGroupID != 7 ||
		!reflect.DeepEqual(dc.MachineTags, []string{"DoNotOffboard"}) || !dc.LastSeen.Equal(t0.Add(-90*24*time.Hour)) {
		t.Errorf("dc01 = %+v", dc)
	}
	if pc := got[1]; len(pc.ID) != 40 || pc.OSPlatform != "Linux" || !pc.LastSeen.Equal(time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)) {
		t.Errorf("pc-9 = %+v", pc)
	}
	s.token(t, "33333333-3333-4333-8333-333333333333", "cccccccc-cccc-4ccc-8ccc-cccccccccccc", "s3cret~C")

	// JSON is read too.
	if _, err := mdesim.ParseFixtures([]byte(`{"tenants": [{"tenantId": "t", "machines": [{"lastSeenAgo": "36h"}]}]}`)); err != nil {
		t.Errorf("JSON fixtures: %v", err)
	}
	for _, bad := range []string{
		`tenants: [{tenantId: t, machines: [{id: xyz}]}]`,
		`tenants: [{tenantId: t, machines: [{lastSeenAgo: soon}]}]`,
		`tenants: [{tenantId: t, machines: [{lastSeenAgo: 213504d}]}]`, // 25 minutes, once wrapped around
		`tenants: [{tenantId: t, machines: [{lastSeenAgo: 1d, lastSeen: 2025-01-01T00:00:00Z}]}]`,
		`tenants: [{machines: []}]`,
		`tenants: [{tenantId: t, machine: []}]`,
	} {
		if _, err := mdesim.ParseFixtures([]byte(bad)); err == nil || !strings.HasPrefix(err.Error(), "fixtures: ") {
			t.Errorf("ParseFixtures(%s) = %v, want a fixtures error", bad, err)
		}
	}
}

// TestHealthFollowsLastSeen: a device given no healthStatus is served as
// the service shows one last seen then: Inactive after more than seven
// days without a signal, Active before. A fixtures file that sets only
// lastSeenAgo: 90d served a device Active that the service lists as
// Inactive, and a plan asked for --health Inactive found none of them.
func TestHealthFollowsLastSeen(t *testing.T) {
	s, tok := simWithMachines(t, `
      - {id: 9999956789abcdef0123456789abcdef01234567, computerDnsName: pc-old.contoso.local, lastSeenAgo: 90d}
      - {id: 9999956789abcdef0123456789abcdef01234568, computerDnsName: pc-week.contoso.local, lastSeenAgo: 169h}
      - {id: 9999956789abcdef0123456789abcdef01234569, computerDnsName: pc-new.contoso.local, lastSeenAgo: 36h}
      - {id: 999995678900000000000000000000000000000a, computerDnsName: pc-set.contoso.local, lastSeenAgo: 90d, healthStatus: NoSensorData}
`)
	want := map[string]string{
		"pc-old.contoso.local": "Inactive", "pc-week.contoso.local": "Inactive",
		"pc-new.contoso.local": "Active", "pc-set.contoso.local": "NoSensorData",
	}
	list := s.do(t, http.MethodGet, "/api/machines", tok, "", "").object(t)
	for _, v := range list["value"].([]any) {
		m := v.(map[string]any)
		if name := m["computerDnsName"].(string); m["healthStatus"] != want[name] {
			t.Errorf("%s last seen %v: healthStatus %v, want %s", name, m["lastSeen"], m["healthStatus"], want[name])
		}
	}
	_, ids, _ := listIDs(t, s, tok, "/api/machines?"+filterQuery("healthStatus eq 'Inactive'"))
	if len(ids) != 2 {
		t.Errorf("healthStatus eq 'Inactive' lists %v, want the two devices unseen for more than seven days", ids)
	}
}

// TestFixturesHealthSpelledAsTheService: the service spells a device's
// healthStatus one way, and its filter binds the value to that spelling.
// A fixtures file's "inactive" was served as written, and no filter on
// healthStatus listed the device; one that is no health state at all
// ("stale") is refused.
func TestFixturesHealthSpelledAsTheService(t *testing.T) {
	s, tok := simWithMachines(t, `
      - {id: 9999956789abcdef0123456789abcdef01234567, computerDnsName: pc-old.contoso.local, lastSeenAgo: 90d, healthStatus: inactive}
      - {id: 9999956789abcdef0123456789abcdef01234568, computerDnsName: pc-gone.contoso.local, lastSeenAgo: 90d, healthStatus: NOSENSORDATA}
`)
	for _, tc := range []struct{ health, id string }{
		{"Inactive", "9999956789abcdef0123456789abcdef01234567"},
		{"NoSensorData", "9999956789abcdef0123456789abcdef01234568"},
	} {
		_, ids, _ := listIDs(t, s, tok, "/api/machines?"+filterQuery("healthStatus eq '"+tc.health+"'"))
		if len(ids) != 1 || ids[0] != tc.id {
			t.Errorf("healthStatus eq '%s' lists %v, want %s", tc.health, ids, tc.id)
		}
	}
	_, err := mdesim.ParseFixtures([]byte(`tenants: [{tenantId: t, machines: [{healthStatus: stale}]}]`))
	if err == nil || !strings.Contains(err.Error(), "healthStatus") {
		t.Errorf("healthStatus stale: %v, want a fixtures error naming healthStatus", err)
	}
}

// simWithMachines is a simulator holding a fixtures tenant whose devices
// are machines (YAML list items, each on its line), and a token of it.
func simWithMachines(t *testing.T, machines string) (*sim, string) {
	t.Helper()
	f, err := mdesim.ParseFixtures([]byte(`
tenants:
  - tenantId: 33333333-3333-4333-8333-333333333333
    clientId: cccccccc-cccc-4ccc-8ccc-cccccccccccc
    clientSecret: s3cret~C
    machines:` + machines))
	if err != nil {
		t.Fatal(err)
	}
	s := newSim(t, mdesim.Options{})
	s.AddFixtures(f)
	return s, s.token(t, "33333333-3333-4333-8333-333333333333", "cccccccc-cccc-4ccc-8ccc-cccccccccccc", "s3cret~C")
}
