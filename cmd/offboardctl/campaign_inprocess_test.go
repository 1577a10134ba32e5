package main

import (
	"strings"
	"sync"
	"testing"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/contoso-secops/mde-offboard/offboard"
)

// TestCampaignRunOfARowInProcess: on three clustered servers, a campaign
// run publishes a row whose copy, under the same message id, another run
// of the campaign (from another shell) published a moment before, not
// stored yet: the stream's leader answers "duplicate message id is in
// process" until its replicas have it. The row is published again and
// dropped as the repeat: every row counted published or published
// before, and answered once, exit 0. Before, the row was counted
// neither ("published 2, published before 0" of 3 rows), though it was
// stored and answered.
func TestCampaignRunOfARowInProcess(t *testing.T) {
	const rows = 3
	e, c, csvPath, report := clusterCampaign(t, rows)
	leader := c.StreamLeader(t.Context(), e.js, offboard.StreamRequests)
	// The other run's copy of the first row goes first, on the same
	// connection to the stream's leader: the leader reads it first, and
	// is still storing it on its replicas as the run's own comes.
	var once sync.Once
	rowPublishing = func(js jetstream.JetStream, m *nats.Msg) {
		once.Do(func() {
			if err := js.Conn().PublishMsg(&nats.Msg{Subject: m.Subject, Header: m.Header, Data: m.Data}); err != nil {
				t.Error(err)
			}
		})
	}
	t.Cleanup(func() { rowPublishing = func(jetstream.JetStream, *nats.Msg) {} })
	code, out, errs := ctl(t, serverURL(c, leader), "campaign", "run", "--tenant", tenant, "--csv", csvPath,
		"--report", report, "--progress-every", "1h", "--timeout", "25s")
	// Published again, the row counts as published, as one whose first
	// answer was lost does (the copy in process may have been the run's
	// own); found stored at once, it is published before.
	counted := strings.Contains(out, "published 3, published before 0") || strings.Contains(out, "published 2, published before 1")
	if code != exitOK || errs != "" || !counted {
		t.Errorf("campaign run: exit %d, stdout %q, stderr %q", code, out, errs)
	}
	checkClusterCampaign(t, e, report, rows)
}
