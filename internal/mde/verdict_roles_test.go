package mde

import (
	"net/http"
	"testing"
	"time"
)

// A 403 for roles missing from the token asks for a new token: the roles
// are in the token as Entra ID issued it, and one had before admin
// consent lacks them. Other refusals of a permission do not.
func TestForbiddenForMissingRolesAsksForANewToken(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		name string
		body []byte
		want bool
	}{
		{"missing roles", apiErrorBody("Forbidden", "Missing application roles. API required roles: Machine.Offboard"), true},
		{"missing roles, another case", apiErrorBody("Forbidden", "missing Application Roles."), true},
		{"DisabledFeature", apiErrorBody("DisabledFeature", "Feature is disabled"), false},
		{"DisallowedOperation", apiErrorBody("DisallowedOperation", "Operation is not allowed"), false},
		{"no body", nil, false},
	} {
		v := Classify(http.StatusForbidden, http.Header{}, tt.body, time.Now())
		if v.Class != Final || v.Reason != ReasonForbidden || v.RefreshToken != tt.want {
			t.Errorf("%s: verdict {%v %v refresh %v}, want {final forbidden refresh %v}", tt.name, v.Class, v.Reason, v.RefreshToken, tt.want)
		}
	}
}
