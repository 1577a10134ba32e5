package main

import (
	"bytes"
	"strings"
	"testing"
)

// A NATS URL given as a campaign's name or inactivity is refused naming
// it without its user and password, as a tenant is; given as --csv, it
// is refused naming the flag: the open error quoted the path whole.
func TestCampaignValuesShowNoPassword(t *testing.T) {
	t.Parallel()
	urlShownWithoutPassword(t, [][]string{
		{"campaign", "status", "--tenant", "contoso", "--name", leakyURL},
		{"campaign", "cancel", "--tenant", "contoso", "--name", leakyURL},
		{"campaign", "run", "--tenant", "contoso", "--csv", "one.csv", "--name", leakyURL},
		{"campaign", "plan", "--tenant", "contoso", "--inactive-for", leakyURL},
	})
	args := []string{"campaign", "run", "--tenant", "contoso", "--csv", leakyURL}
	var out, errb bytes.Buffer
	code := run(args, &out, &errb)
	if msg := errb.String(); code != exitUsage || strings.Contains(msg, "S3CR3T") || strings.Contains(msg, "alice") || !strings.Contains(msg, "--csv") {
		t.Errorf("%q: exit %d, stderr %q; want %d, naming --csv without the value", args, code, msg, exitUsage)
	}
}
