package mde

import (
	"context"
	"net/http"
	"strings"
	"testing"
)

// TestRedirectNamesWhereTo: a redirect, not followed, says where it
// pointed: "HTTP 308" alone left an operator whose every call failed so
// (an API host moved, a proxy's sign-in page) with nothing to go on. The
// target is shown without its query, and without the token should the
// redirect carry it.
func TestRedirectNamesWhereTo(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name, location, want string
	}{
		{"another host", "https://api.security.microsoft.com/api/machines/" + testMachineID + "/offboard?x=1", "https://api.security.microsoft.com/api/machines/" + testMachineID + "/offboard"},
		{"a path of the same host", "/login?return=/api", "/login"},
		{"the token in its path and query", "https://proxy.example/" + testToken + "?t=" + testToken, "https://proxy.example/"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			f := setupAPI(t, func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Location", tc.location)
				w.WriteHeader(http.StatusPermanentRedirect)
			}, nil)
			v := f.client.Offboard(context.Background(), testMachineID, "c")
			if v.Status != http.StatusPermanentRedirect || v.Class != Final {
				t.Fatalf("verdict %d %v, want 308 final", v.Status, v.Class)
			}
			msg := v.Error()
			if !strings.Contains(msg, tc.want) {
				t.Errorf("error %q does not name the redirect's target %q", msg, tc.want)
			}
			if strings.Contains(msg, testToken) || strings.Contains(msg, "x=1") {
				t.Errorf("error %q shows the token or the target's query", msg)
			}
		})
	}
}
