package mdesim_test

import (
	"net/http"
	"testing"
	"time"

	"github.com/contoso-secops/mde-offboard/internal/mde/mdesim"
)

// TestOffboardedDeviceNeverTakesAnotherOffboard: offboarding stops the
// device's sensor, so a device whose offboard succeeded does not come
// online again to take a later one. The later request is accepted (the
// device still shows Onboarded in the list) and its action stays Pending
// however long ActionCompleteAfter is, as it would for the real service.
// Another device's action still completes.
func TestOffboardedDeviceNeverTakesAnotherOffboard(t *testing.T) {
	tests := []struct {
		name string
		// done ends the first action: the device taking it, or a test
		// saying it did.
		done func(s *sim, id string)
	}{
		{"completed by the device", func(s *sim, _ string) { s.clock.Advance(10 * time.Minute) }},
		{"set Succeeded", func(s *sim, id string) { s.SetActionStatus(tenantA, id, mdesim.StatusSucceeded) }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := newSim(t, mdesim.Options{ActionCompleteAfter: 10 * time.Minute})
			tok := s.token(t, tenantA, clientA, secretA)
			first := s.offboard(t, tok, winID, "first").object(t)["id"].(string)
			tc.done(s, first)

			r := s.offboard(t, tok, winID, "again")
			if r.status != http.StatusCreated {
				t.Fatalf("offboard of an offboarded device: %d %s", r.status, r.body)
			}
			again := r.object(t)["id"].(string)
			other := s.offboard(t, tok, win2ID, "other").object(t)["id"].(string)
			s.clock.Advance(24 * time.Hour)
			tok = s.token(t, tenantA, clientA, secretA)

			status := func(id string) string {
				t.Helper()
				one := s.do(t, http.MethodGet, "/api/machineactions/"+id, tok, "", "")
				if one.status != http.StatusOK {
					t.Fatalf("GET action: %d %s", one.status, one.body)
				}
				return one.object(t)["status"].(string)
			}
			if got := status(first); got != mdesim.StatusSucceeded {
				t.Errorf("first action = %s, want Succeeded", got)
			}
			if got := status(again); got != mdesim.StatusPending {
				t.Errorf("later action of the offboarded device = %s a day on, want Pending", got)
			}
			if got := status(other); got != mdesim.StatusSucceeded {
				t.Errorf("other device's action = %s, want Succeeded", got)
			}
		})
	}
}
