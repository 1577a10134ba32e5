package mde

import (
	"testing"
	"time"
)

// The API's dates have at most seven digits after the second, and whether
// its filter parser takes nine is not documented: the cutoff is sent in
// whole seconds, rounded up, so that no device last seen before the
// cutoff is left out (the plan checks each device's lastSeen itself).
func TestInactiveFilterCutoffInWholeSeconds(t *testing.T) {
	cutoff := time.Date(2026, 10, 7, 10, 56, 30, 123456789, time.FixedZone("CEST", 2*3600))
	got := InactiveFilter(cutoff, nil, nil)
	if want := "lastSeen lt 2026-10-07T08:56:31Z"; got != want {
		t.Errorf("filter %q, want %q", got, want)
	}
	if got, want := InactiveFilter(cutoff.Truncate(time.Second), nil, nil), "lastSeen lt 2026-10-07T08:56:30Z"; got != want {
		t.Errorf("a whole second: filter %q, want %q", got, want)
	}
	got = InactiveFilter(cutoff, []string{"Inactive"}, []string{"Windows10", "Linux"})
	if want := "lastSeen lt 2026-10-07T08:56:31Z and healthStatus eq 'Inactive' and (osPlatform eq 'Windows10' or osPlatform eq 'Linux')"; got != want {
		t.Errorf("filter %q, want %q", got, want)
	}
}
