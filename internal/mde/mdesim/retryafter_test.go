package mdesim_test

import (
	"math"
	"testing"
	"time"

	"github.com/contoso-secops/mde-offboard/internal/mde/mdesim"
)

// An injected 429 asks for the pause it was given, in whole seconds
// rounded up, however long: a client's handling of an absurd Retry-After
// is tested with the simulator.
func TestInjectedRetryAfterOfAnyLength(t *testing.T) {
	s := newSim(t, mdesim.Options{Unlimited: true})
	tok := s.token(t, tenantA, clientA, secretA)
	for _, tc := range []struct {
		after time.Duration
		want  string
	}{
		{time.Duration(math.MaxInt64), "9223372037"},
		{time.Duration(math.MaxInt64) - time.Second + 2, "9223372036"},
		{1000 * time.Hour, "3600000"},
		{time.Nanosecond, "1"},
	} {
		s.InjectStatus(tenantA, mdesim.APIOffboard, 429, "", "", 1, tc.after)
		r := s.offboard(t, tok, winID, "x")
		if r.status != 429 {
			t.Fatalf("Retry-After %v: status %d, want 429", tc.after, r.status)
		}
		if got := r.header.Get("Retry-After"); got != tc.want {
			t.Errorf("injected %v: Retry-After %q, want %q", tc.after, got, tc.want)
		}
	}
}
