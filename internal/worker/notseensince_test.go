package worker

import (
	"strings"
	"testing"
	"time"

	"github.com/contoso-secops/mde-offboard/internal/mde"
)

// TestSeenSince: a request's notSeenSince holds for a device whose
// lastSeen is not after it, to the second, whatever zone either is
// written in; it does not for a device seen after it, nor for one whose
// lastSeen is missing, no time, or a placeholder for never seen: nothing
// shows that the device was not seen since.
func TestSeenSince(t *testing.T) {
	t.Parallel()
	since := time.Date(2026, 8, 1, 9, 12, 0, 123456700, time.UTC)
	for _, tc := range []struct {
		lastSeen string
		says     string // "": the premise holds
	}{
		{lastSeen: "2026-08-01T09:12:00.1234567Z"},
		{lastSeen: "2026-08-01T11:12:00.1234567+02:00"},
		{lastSeen: "2026-08-01T09:12:00.1234567"}, // no zone: UTC
		{lastSeen: "2026-05-03T00:00:00Z"},
		// The same second: a plan whose fractions a tool cut or
		// rounded, a record Defender gives at another precision.
		{lastSeen: "2026-08-01T09:12:00.1234568Z"},
		{lastSeen: "2026-08-01T09:12:00.9999999Z"},
		{lastSeen: "2026-08-01T09:12:01Z", says: `saw the device again (lastSeen "2026-08-01T09:12:01Z")`},
		{lastSeen: "2026-12-07T08:00:00Z", says: "only if it was not seen after 2026-08-01T09:12:00.1234567Z"},
		{lastSeen: "", says: "gives no lastSeen"},
		{lastSeen: "yesterday", says: `"yesterday" is not a time`},
		{lastSeen: "0001-01-01T00:00:00Z", says: "placeholder"},
	} {
		why := seenSince(since, &mde.Machine{ID: strings.Repeat("a", 40), LastSeen: tc.lastSeen})
		if tc.says == "" && why != "" || tc.says != "" && !strings.Contains(why, tc.says) {
			t.Errorf("lastSeen %q: %q, want %q", tc.lastSeen, why, tc.says)
		}
	}
	// A plan's lastSeen with its fractions cut (a spreadsheet keeps
	// whole seconds), or Defender's record read with none and then with
	// seven digits: the same sighting, not a device seen again.
	for _, tc := range []struct{ since, lastSeen string }{
		{"2026-08-01T09:12:00Z", "2026-08-01T09:12:00.1234567Z"},
		{"2026-08-01T09:12:00.123Z", "2026-08-01T09:12:00.1234567Z"},
		{"2026-08-01T11:12:00+02:00", "2026-08-01T09:12:00.9Z"},
	} {
		since, err := time.Parse(time.RFC3339Nano, tc.since)
		if err != nil {
			t.Fatal(err)
		}
		if why := seenSince(since, &mde.Machine{ID: strings.Repeat("a", 40), LastSeen: tc.lastSeen}); why != "" {
			t.Errorf("notSeenSince %s, lastSeen %s: %q, want the premise to hold", tc.since, tc.lastSeen, why)
		}
	}
}
