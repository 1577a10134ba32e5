package main

import (
	"strings"
	"testing"

	"github.com/contoso-secops/mde-offboard/internal/campaign"
)

// TestCampaignProgressCountsRowsNotPublished: rows whose publish failed
// (their acknowledgement timed out while NATS was away) get no result in
// this run; the progress counts them. It showed answered and waiting
// alone, 0 and 19,143 of 20,000 rows, with no word of the other 857,
// until the run's last line.
func TestCampaignProgressCountsRowsNotPublished(t *testing.T) {
	t.Parallel()
	s := progressSnapshot{name: "big", tenant: "contoso", published: 19143,
		counts: campaign.Counts{Rows: 20000, Waiting: 19143, Unpublished: 857}}
	if line := s.line(); !strings.Contains(line, "not published 857") {
		t.Errorf("progress line %q does not count the rows not published", line)
	}
	for _, room := range []int{-1, 60} {
		if d := fitDescription(s, room); !strings.Contains(d, "not published 857") {
			t.Errorf("bar's description in %d columns %q does not count the rows not published", room, d)
		}
	}
}
