package mdesim_test

import (
	"net/http"
	"testing"
	"time"

	"github.com/contoso-secops/mde-offboard/internal/mde/mdesim"
)

// TestInProgressActionCompletes: an action goes Pending, InProgress, then
// to a final status. One a device has taken (set InProgress) completes
// when ActionCompleteAfter says, as a Pending one does, not later than
// it was taken; it does not stay InProgress for ever.
func TestInProgressActionCompletes(t *testing.T) {
	s := newSim(t, mdesim.Options{ActionCompleteAfter: 10 * time.Minute})
	tok := s.token(t, tenantA, clientA, secretA)
	created := s.clock.Now()
	id := s.offboard(t, tok, winID, "x").object(t)["id"].(string)
	s.clock.Advance(4 * time.Minute)
	if !s.SetActionStatus(tenantA, id, mdesim.StatusInProgress) {
		t.Fatal("SetActionStatus: action not found")
	}
	read := func() map[string]any {
		t.Helper()
		one := s.do(t, http.MethodGet, "/api/machineactions/"+id, tok, "", "")
		if one.status != http.StatusOK {
			t.Fatalf("GET action: %d %s", one.status, one.body)
		}
		return one.object(t)
	}
	s.clock.Advance(6*time.Minute - time.Nanosecond)
	if got := read()["status"]; got != mdesim.StatusInProgress {
		t.Errorf("before completion: status %v, want InProgress", got)
	}
	s.clock.Advance(time.Hour)
	tok = s.token(t, tenantA, clientA, secretA)
	a := read()
	if a["status"] != mdesim.StatusSucceeded {
		t.Errorf("an hour after completion: status %v, want Succeeded", a["status"])
	}
	if want := created.Add(10 * time.Minute).UTC().Format("2006-01-02T15:04:05.9999999Z"); a["lastUpdateDateTimeUtc"] != want {
		t.Errorf("lastUpdateDateTimeUtc %v, want %s", a["lastUpdateDateTimeUtc"], want)
	}
}
