package main

import (
	"bytes"
	"strings"
	"testing"
)

// TestCampaignCancelByNamesItsFlag: campaign cancel's --by (the old name
// of --as) refused names --by, the flag the operator gave, not --as.
func TestCampaignCancelByNamesItsFlag(t *testing.T) {
	t.Parallel()
	for _, c := range []struct{ flag, value, want string }{
		{"--by", "", "--by is empty"},
		{"--by", " ", "--by is empty"},
		{"--by", "ali\u200bce", "--by holds an invisible character"},
		{"--by", "alice\nbob", "--by holds a control character"},
		{"--by", strings.Repeat("a", maxAs+1), "--by is 129 characters long"},
		{"--as", "", "--as is empty"},
		{"--as", "alice\nbob", "--as holds a control character"},
	} {
		var out, errb bytes.Buffer
		code := run([]string{"--nats-url", "nats://127.0.0.1:1", "campaign", "cancel", "--tenant", "contoso", "--name", "wave", c.flag, c.value}, &out, &errb)
		if code != exitUsage || !strings.Contains(errb.String(), c.want) || strings.Count(strings.TrimSpace(errb.String()), "\n") != 0 {
			t.Errorf("%s %q: exit %d, stderr %q; want exit %d and one line with %q", c.flag, c.value, code, errb.String(), exitUsage, c.want)
		}
	}
}
