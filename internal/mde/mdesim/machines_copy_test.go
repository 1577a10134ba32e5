package mdesim_test

import (
	"encoding/json"
	"net/http"
	"testing"

	"github.com/contoso-secops/mde-offboard/internal/mde/mdesim"
)

// Machines hands out copies: a test that changes what it got, its
// members as its tags, changes nothing the simulator serves.
func TestMachinesHandsOutCopies(t *testing.T) {
	s := newSim(t, mdesim.Options{})
	const id = "7777756789abcdef0123456789abcdef01234567"
	s.AddMachine(tenantA, mdesim.Machine{ID: id, MachineTags: []string{"Lab"},
		Members: map[string]json.RawMessage{"riskScore": json.RawMessage(`"High"`)}})
	for _, m := range s.Machines(tenantA) {
		if m.ID != id {
			continue
		}
		m.MachineTags[0] = "Changed"
		m.Members["riskScore"] = json.RawMessage(`"Changed"`)
		m.Members["rbacGroupId"] = json.RawMessage(`"Changed"`)
	}
	tok := s.token(t, tenantA, clientA, secretA)
	r := s.do(t, http.MethodGet, "/api/machines/"+id, tok, "", "")
	if r.status != http.StatusOK {
		t.Fatalf("GET machine: status %d: %s", r.status, r.body)
	}
	got := r.object(t)
	if got["riskScore"] != "High" || got["rbacGroupId"] != float64(0) {
		t.Errorf("served riskScore %v, rbacGroupId %v; want High and 0 as added", got["riskScore"], got["rbacGroupId"])
	}
	if tags, _ := got["machineTags"].([]any); len(tags) != 1 || tags[0] != "Lab" {
		t.Errorf("served machineTags %v, want [Lab]", got["machineTags"])
	}
}
