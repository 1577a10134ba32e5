package main

import (
	"strings"
	"testing"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/contoso-secops/mde-offboard/internal/queue"
	"github.com/contoso-secops/mde-offboard/internal/queue/natstest"
	"github.com/contoso-secops/mde-offboard/offboard"
)

// TestCampaignCancelOfAnEventInProcess: on three clustered servers, a
// campaign cancel publishes its control event while the same event,
// under the same message id, is being stored: another operator's cancel
// found the mark set and published it a moment before (storeMissedEvent).
// The results stream's leader answers "duplicate message id is in
// process" until its replicas have it. The event is published again and
// dropped as the repeat: cancelled, exit 0, the event stored once.
// Before, the cancel said its control event was not stored, exit 1,
// though it was.
func TestCampaignCancelOfAnEventInProcess(t *testing.T) {
	c := natstest.Start(t, 3)
	_, js := c.Connect(t)
	if _, err := queue.Ensure(t.Context(), js, queue.Settings{Tenants: []string{tenant}, Replicas: 3}); err != nil {
		t.Fatal(err)
	}
	if _, err := offboard.Publish(t.Context(), js, offboard.Subjects{}, tenant, offboard.Bulk,
		offboard.Request{RequestID: "camp-000001", MachineID: strings.Repeat("a", 40), Source: "campaign:camp"}); err != nil {
		t.Fatal(err)
	}
	leader := c.StreamLeader(t.Context(), js, offboard.StreamResults)
	// The other operator's copy goes first, on the same connection to the
	// stream's leader: the leader reads it first, and is still storing it
	// on its replicas as the command's own comes.
	cancelEventPublishing = func(js jetstream.JetStream, m *nats.Msg) {
		if err := js.Conn().PublishMsg(&nats.Msg{Subject: m.Subject, Header: m.Header, Data: m.Data}); err != nil {
			t.Error(err)
		}
	}
	t.Cleanup(func() { cancelEventPublishing = func(jetstream.JetStream, *nats.Msg) {} })
	code, out, errs := ctl(t, serverURL(c, leader), "campaign", "cancel", "--tenant", tenant, "--name", "camp", "--as", "zoe", "--reason", "wrong list")
	if code != exitOK || !strings.Contains(out, "campaign camp of tenant contoso cancelled") {
		t.Errorf("campaign cancel: exit %d, stdout %q, stderr %q", code, out, errs)
	}
	if n := controlEvents(t, js); n != 1 {
		t.Errorf("%d control events; want the cancel's, once", n)
	}
}
