package mdesim_test

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/contoso-secops/mde-offboard/internal/mde"
	"github.com/contoso-secops/mde-offboard/internal/mde/mdesim"
)

// TestInventoryFilterAndPaging: the $filter the campaign plan sends
// (lastSeen, healthStatus, osPlatform, rbacGroupId; and, or in
// parentheses) and $top/$skip paging, with the documented page limit.
func TestInventoryFilterAndPaging(t *testing.T) {
	s := newSim(t, mdesim.Options{})
	// Tenant B: device i last seen i days before t0; every third one
	// Inactive; odd ones Windows10, the rest Windows11; group i%2+1.
	var ids []string
	for i := range 30 {
		m := mdesim.Machine{
			ID: fmt.Sprintf("%040x", i+1), ComputerDNSName: fmt.Sprintf("pc-%02d.fabrikam.local", i),
			LastSeen: t0.Add(-time.Duration(i) * 24 * time.Hour), OSPlatform: "Windows11", HealthStatus: "Active",
			RbacGroupID: i%2 + 1,
		}
		if i%3 == 0 {
			m.HealthStatus = "Inactive"
		}
		if i%2 == 1 {
			m.OSPlatform = "Windows10"
		}
		s.AddMachine(tenantB, m)
		ids = append(ids, m.ID)
	}
	pick := func(keep func(i int) bool) []string {
		out := []string{}
		for i, id := range ids {
			if keep(i) {
				out = append(out, id)
			}
		}
		return out
	}
	tok := s.token(t, tenantB, clientB, secretB)
	day := func(n int) string { return t0.Add(-time.Duration(n) * 24 * time.Hour).Format(time.RFC3339Nano) }
	tests := []struct {
		name, query string
		want        []string // nil: 400 ODataError
	}{
		{"lastSeen lt", filterQuery("lastSeen lt " + day(20)), pick(func(i int) bool { return i > 20 })},
		{"lastSeen gt", filterQuery("lastSeen gt " + day(3)), pick(func(i int) bool { return i < 3 })},
		{"date-only literal", filterQuery("lastSeen lt 2025-02-01Z"), pick(func(i int) bool {
			return t0.Add(-time.Duration(i) * 24 * time.Hour).Before(time.Date(2025, 2, 1, 0, 0, 0, 0, time.UTC))
		})},
		{"what the plan sends", filterQuery(mde.InactiveFilter(t0.Add(-10*24*time.Hour), []string{"Inactive"}, []string{"Windows10", "Linux"})),
			pick(func(i int) bool { return i > 10 && i%3 == 0 && i%2 == 1 })},
		{"rbacGroupId", filterQuery("rbacGroupId eq 2 and lastSeen lt " + day(25)), pick(func(i int) bool { return i > 25 && i%2 == 1 })},
		{"or in parentheses", filterQuery("(healthStatus eq 'Inactive' or osPlatform eq 'Windows10') and lastSeen lt " + day(24)),
			pick(func(i int) bool { return i > 24 && (i%3 == 0 || i%2 == 1) })},
		{"top and skip", "$top=4&$skip=10", ids[10:14]},
		{"skip beyond the end", "$top=4&$skip=40", []string{}},
		{"top of 10,000", "$top=10000", ids},
		{"page of a filter", filterQuery("lastSeen lt "+day(5)) + "&$top=10&$skip=20", ids[26:30]},
		{"top over the page limit", "$top=10001", nil},
		{"number literal for a string", filterQuery("osPlatform eq 2"), nil},
		{"string literal for a number", filterQuery("rbacGroupId eq '2'"), nil},
		{"bad date-time", filterQuery("lastSeen lt 2025-13-01T00:00:00Z"), nil},
		{"unbalanced parenthesis", filterQuery("(healthStatus eq 'Inactive'"), nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			status, got, r := listIDs(t, s, tok, "/api/machines?"+tc.query)
			if tc.want == nil {
				if status != 400 || r.apiError(t).Code != "ODataError" {
					t.Errorf("status %d %s, want 400 ODataError", status, r.body)
				}
				return
			}
			if status != 200 {
				t.Fatalf("status %d: %s", status, r.body)
			}
			if strings.Join(got, ",") != strings.Join(tc.want, ",") {
				t.Errorf("ids = %v, want %v", got, tc.want)
			}
		})
	}
}

// TestInventory: generated devices are valid, repeatable and spread.
func TestInventory(t *testing.T) {
	a, b := mdesim.Inventory(2000, 7, t0), mdesim.Inventory(2000, 7, t0)
	platforms, stale, tagged := map[string]int{}, 0, 0
	for i, m := range a {
		if m.ID != b[i].ID || !m.LastSeen.Equal(b[i].LastSeen) {
			t.Fatalf("device %d differs between two runs with one seed", i)
		}
		if len(m.ID) != 40 || m.ComputerDNSName == "" || m.LastSeen.After(t0) {
			t.Fatalf("device %d: %+v", i, m)
		}
		platforms[m.OSPlatform]++
		if t0.Sub(m.LastSeen) > 90*24*time.Hour {
			stale++
		}
		if len(m.MachineTags) > 0 {
			tagged++
		}
	}
	if len(platforms) < 5 || stale < 600 || stale > 1400 || tagged == 0 {
		t.Errorf("platforms %v, %d stale over 90d, %d tagged", platforms, stale, tagged)
	}
}

// TestFilterEnumMembers: healthStatus, and a machine action's type and
// status, are enumerations (the Machine and MachineAction resource
// types): a $filter literal binds to a member by its exact name, and one
// that names no member is 400 ODataError, not an empty list.
func TestFilterEnumMembers(t *testing.T) {
	s := newSim(t, mdesim.Options{})
	s.AddMachine(tenantB, mdesim.Machine{ID: fmt.Sprintf("%040x", 1), ComputerDNSName: "pc-01.fabrikam.local", HealthStatus: "NoSensorData"})
	tok := s.token(t, tenantB, clientB, secretB)
	tests := []struct {
		path string
		want []string // nil: 400 ODataError
	}{
		{"/api/machines?" + filterQuery("healthStatus eq 'NoSensorData'"), []string{fmt.Sprintf("%040x", 1)}},
		{"/api/machines?" + filterQuery("healthStatus ne 'Active'"), []string{fmt.Sprintf("%040x", 1)}},
		{"/api/machines?" + filterQuery("healthStatus eq 'Unknown'"), []string{}},
		{"/api/machines?" + filterQuery("healthStatus eq 'nosensordata'"), nil},
		{"/api/machines?" + filterQuery("healthStatus eq 'Stale'"), nil},
		{"/api/machines?" + filterQuery("startswith(healthStatus,'No')"), nil},
		{"/api/machineactions?" + filterQuery("type eq 'Offboard' and status eq 'Pending'"), []string{}},
		{"/api/machineactions?" + filterQuery("type eq 'offboard'"), nil},
		{"/api/machineactions?" + filterQuery("status eq 'pending'"), nil},
		{"/api/machineactions?" + filterQuery("status eq 'Done'"), nil},
	}
	for _, tc := range tests {
		status, got, r := listIDs(t, s, tok, tc.path)
		if tc.want == nil {
			if status != 400 || r.apiError(t).Code != "ODataError" {
				t.Errorf("%s: status %d %s, want 400 ODataError", tc.path, status, r.body)
			}
			continue
		}
		if status != 200 || strings.Join(got, ",") != strings.Join(tc.want, ",") {
			t.Errorf("%s: status %d ids %v, want 200 %v", tc.path, status, got, tc.want)
		}
	}
}
