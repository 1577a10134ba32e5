package campaign

import (
	"strings"
	"testing"
	"time"

	"github.com/contoso-secops/mde-offboard/offboard"
)

// TestRowLastSeenIsTheRequestsPremise: a CSV's lastSeen column (a
// plan's) gives each row's request its notSeenSince, unless
// IgnoreLastSeen; an empty cell gives none; a cell that is no time makes
// the row invalid, naming the column and the line, after a problem of
// another field, as the request's checks go in field order.
func TestRowLastSeenIsTheRequestsPremise(t *testing.T) {
	t.Parallel()
	csv := strings.Join(offboard.PlanHeader, ",") + "\n" +
		strings.Repeat("a", 40) + ",pc-1.contoso.local,2026-08-01T09:12:00.1234567Z,Windows11,Inactive,,\n" +
		strings.Repeat("b", 40) + ",pc-2.contoso.local,,Windows11,Inactive,,\n" +
		strings.Repeat("c", 40) + ",pc-3.contoso.local,01/08/2026 09:12,Windows11,Inactive,,\n" +
		"x" + strings.Repeat("d", 39) + ",pc-4.contoso.local,yesterday,Windows11,Inactive,,\n"
	read := func(s Settings) (reqs []offboard.Request, errs []error) {
		rd, err := NewReader(strings.NewReader(csv))
		if err != nil {
			t.Fatal(err)
		}
		for range 4 {
			row, err := rd.Next()
			if err != nil {
				t.Fatal(err)
			}
			req, _, err := s.Request(row)
			reqs, errs = append(reqs, req), append(errs, err)
		}
		return reqs, errs
	}
	want := time.Date(2026, 8, 1, 9, 12, 0, 123456700, time.UTC)
	reqs, errs := read(Settings{Tenant: "contoso", Name: "retire"})
	if errs[0] != nil || !reqs[0].NotSeenSince.Equal(want) {
		t.Errorf("row 1: notSeenSince %v (%v), want %v", reqs[0].NotSeenSince, errs[0], want)
	}
	if errs[1] != nil || !reqs[1].NotSeenSince.IsZero() {
		t.Errorf("row 2, its lastSeen empty: notSeenSince %v (%v), want none", reqs[1].NotSeenSince, errs[1])
	}
	if errs[2] == nil || !strings.Contains(errs[2].Error(), `line 4: lastSeen "01/08/2026 09:12" is not an RFC 3339 time`) {
		t.Errorf("row 3: %v, want its lastSeen refused", errs[2])
	}
	if errs[3] == nil || !strings.Contains(errs[3].Error(), "machineId") {
		t.Errorf("row 4, its machineId and lastSeen bad: %v, want the machineId named, the first field", errs[3])
	}
	reqs, errs = read(Settings{Tenant: "contoso", Name: "retire", IgnoreLastSeen: true})
	for i := range reqs[:3] {
		if errs[i] != nil || !reqs[i].NotSeenSince.IsZero() {
			t.Errorf("row %d with IgnoreLastSeen: notSeenSince %v (%v), want none", i+1, reqs[i].NotSeenSince, errs[i])
		}
	}
}

// TestParseLastSeenAsASpreadsheetWritesIt: a plan's lastSeen written back
// by a spreadsheet, a space for the T and no zone, is the same UTC time;
// a locale's form, without seconds, is refused, and a refusal quotes the
// cell as written.
func TestParseLastSeenAsASpreadsheetWritesIt(t *testing.T) {
	t.Parallel()
	for cell, want := range map[string]time.Time{
		"2026-06-10 15:52:54":          time.Date(2026, 6, 10, 15, 52, 54, 0, time.UTC),
		"2026-06-10 15:52:54.123":      time.Date(2026, 6, 10, 15, 52, 54, 123000000, time.UTC),
		"2026-06-10T15:52:54.1234567":  time.Date(2026, 6, 10, 15, 52, 54, 123456700, time.UTC),
		"2026-06-10T15:52:54.1234567Z": time.Date(2026, 6, 10, 15, 52, 54, 123456700, time.UTC),
	} {
		if got, err := ParseLastSeen(cell); err != nil || !got.Equal(want) {
			t.Errorf("%q: %v (%v), want %v", cell, got, err, want)
		}
	}
	for cell, says := range map[string]string{
		"6/10/2026 15:52":     `lastSeen "6/10/2026 15:52" is not an RFC 3339 time`,
		"2026-06-10 15:52":    `lastSeen "2026-06-10 15:52" is not an RFC 3339 time`,
		"1999-12-31 23:59:59": `lastSeen "1999-12-31 23:59:59" is before 2000`,
		"2026-02-30 10:00:00": `lastSeen "2026-02-30 10:00:00" is not a time`,
	} {
		if _, err := ParseLastSeen(cell); err == nil || !strings.Contains(err.Error(), says) {
			t.Errorf("%q: %v, want %q", cell, err, says)
		}
	}
}

// TestPremiseColumnNamedOtherwise: a column that names a row's premise
// otherwise than lastSeen (the request's notSeenSince, lastSeen in
// another naming style) refuses the CSV, naming the column: ignored as
// another column, it left its rows without their premise, and a device
// seen again was offboarded. lastSeen in any case is the column, and a
// name that only begins so (lastSeenBy) is another.
func TestPremiseColumnNamedOtherwise(t *testing.T) {
	t.Parallel()
	for _, h := range []string{"notSeenSince", "not_seen_since", "last_seen", "Last Seen", "LAST-SEEN", " lastSeen. "} {
		_, err := NewReader(strings.NewReader("machineId," + h + "\n" + strings.Repeat("a", 40) + ",2026-08-01T09:12:00Z\n"))
		if err == nil || !strings.Contains(err.Error(), "column "+offboard.Quote(strings.TrimSpace(h))) || !strings.Contains(err.Error(), "lastSeen") {
			t.Errorf("column %q: %v, want the CSV refused naming it", h, err)
		}
	}
	for _, h := range []string{"lastSeen", "LASTSEEN", " lastseen ", "lastSeenBy", "seen"} {
		if _, err := NewReader(strings.NewReader("machineId," + h + "\n" + strings.Repeat("a", 40) + ",x\n")); err != nil {
			t.Errorf("column %q: %v, want it taken", h, err)
		}
	}
}
