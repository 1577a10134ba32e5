package mdesim_test

import (
	"net/http"
	"testing"

	"github.com/contoso-secops/mde-offboard/internal/mde/mdesim"
)

// The documents disagree on whether macOS and Linux devices can be
// offboarded through the API: the older list refuses them, a newer one
// admits them. Each answer can be had.
func TestOffboardPlatforms(t *testing.T) {
	tests := []struct {
		name     string
		all      bool
		id       string
		want     int
		wantCode string
	}{
		{"older list refuses linux", false, linuxID, http.StatusBadRequest, "OsPlatformNotSupported"},
		{"older list refuses macOS", false, macID, http.StatusBadRequest, "OsPlatformNotSupported"},
		{"newer list offboards linux", true, linuxID, http.StatusCreated, ""},
		{"newer list offboards macOS", true, macID, http.StatusCreated, ""},
		{"windows either way", true, winID, http.StatusCreated, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := newSim(t, mdesim.Options{OffboardAnyPlatform: tc.all})
			tok := s.token(t, tenantA, clientA, secretA)
			r := s.do(t, http.MethodPost, "/api/machines/"+tc.id+"/offboard", tok, "application/json", `{"Comment":"x"}`)
			if r.status != tc.want {
				t.Fatalf("status = %d, want %d: %s", r.status, tc.want, r.body)
			}
			if tc.wantCode != "" {
				if e := r.apiError(t); e.Code != tc.wantCode {
					t.Errorf("code = %q, want %q", e.Code, tc.wantCode)
				}
				return
			}
			if a := r.object(t); a["machineId"] != tc.id || a["type"] != "Offboard" || a["status"] != mdesim.StatusPending {
				t.Errorf("action = %v, want a Pending Offboard of %s", a, tc.id)
			}
		})
	}
}
