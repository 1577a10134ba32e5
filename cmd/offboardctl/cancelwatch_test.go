package main

import (
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/contoso-secops/mde-offboard/internal/campaign"
	"github.com/contoso-secops/mde-offboard/internal/queue/natstest"
)

// TestRunSeesACancelAfterNATSRestart: a run still publishing when its lone
// NATS server restarts sees its campaign's cancel, made once the server is
// back, within the watch's second-long check of the connection, and
// publishes no more rows. The watch's consumer, which the server kept in
// memory, was gone, and the client library made it again only after two
// missed heartbeats (about ten seconds): meanwhile every row went on being
// published.
func TestRunSeesACancelAfterNATSRestart(t *testing.T) {
	t.Parallel()
	c := natstest.Start(t, 1)
	_, js := c.Connect(t, nats.MaxReconnects(-1), nats.ReconnectWait(100*time.Millisecond))
	if _, err := campaign.ControlBucket(t.Context(), js); err != nil {
		t.Fatal(err)
	}
	r := &campaignRun{js: js, f: runFlags{tenant: tenant, name: "wave"}}
	stop, err := r.watchCancel(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	defer stop()
	c.Shutdown(0)
	c.Restart(0)
	_, fresh := c.Connect(t)
	kv, err := campaign.ControlBucket(t.Context(), fresh)
	if err != nil {
		t.Fatal(err)
	}
	if err := campaign.SetMark(t.Context(), kv, tenant, "wave", campaign.Mark{Cancelled: true}); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(2500 * time.Millisecond)
	for !r.cancelledNow() {
		if time.Now().After(deadline) {
			t.Fatal("campaign wave, cancelled once NATS was back, not seen within 2.5s")
		}
		time.Sleep(20 * time.Millisecond)
	}
}
