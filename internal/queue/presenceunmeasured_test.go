package queue

import (
	"encoding/json"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"

	"github.com/contoso-secops/mde-offboard/internal/queue/natstest"
)

// TestPresenceStartedAfterADeathUnmeasuredLeavesNoTenantUnworked: as
// TestPresenceStartedAfterADeathLeavesNoTenantUnworked, but the read of
// the new replica's first announcement, which measures its clock against
// the server's, fails (the server slow, NATS away a moment): its own
// announcement, which its watch brings last, measures it then. Each
// tenant the dead replica ranked first is worked by one of the two live
// ones at every look. Before, the entries the watch read before its own
// counted from their reading: the new replica left those tenants to the
// dead one for three beats, and nobody worked them.
func TestPresenceStartedAfterADeathUnmeasuredLeavesNoTenantUnworked(t *testing.T) {
	t.Parallel()
	url := natstest.StartWithUsers(t,
		&server.User{Username: "admin", Password: "a"},
		// Its announcement read back is refused: no answer comes.
		&server.User{Username: "unread", Password: "u", Permissions: &server.Permissions{
			Publish: &server.SubjectPermission{
				Allow: []string{">"},
				Deny:  []string{"$JS.API.DIRECT.GET.>", "$JS.API.STREAM.MSG.GET.>"},
			},
		}})
	_, js := natstest.ConnectTo(t, url, nats.UserInfo("admin", "a"))
	_, unread := natstest.ConnectTo(t, url, nats.UserInfo("unread", "u"))
	if _, err := js.CreateOrUpdateKeyValue(t.Context(), Settings{}.Presence()); err != nil {
		t.Fatal(err)
	}
	var tenant string
	for i := 0; ; i++ {
		tenant = fmt.Sprintf("t%d", i)
		if rank("dead", tenant) > rank("new", tenant) && rank("new", tenant) > rank("old", tenant) {
			break
		}
	}
	kv, err := js.KeyValue(t.Context(), BucketPresence)
	if err != nil {
		t.Fatal(err)
	}
	data, err := json.Marshal(announcement{Tenants: []string{tenant}, Instance: "dead"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := kv.Put(t.Context(), "dead", data); err != nil {
		t.Fatal(err)
	}
	var never atomic.Bool
	old := startAsidePresence(t, js, "old", &never, tenant)
	waitFor(t, 5*time.Second, "old takes the tenant once the dead replica's announcement expired", func() bool {
		return !old.Running("dead") && old.Assigned(tenant)
	})
	started := startAsidePresence(t, unread, "new", &never, tenant)
	waitFor(t, 5*time.Second, "old reads new's announcement", func() bool { return old.Running(started.Instance()) })
	// Three beats of 250 ms: as long as new counted the dead one alive.
	looks, nobody := 0, 0
	for end := time.Now().Add(time.Second); time.Now().Before(end); time.Sleep(10 * time.Millisecond) {
		looks++
		if !old.Assigned(tenant) && !started.Assigned(tenant) {
			nobody++
		}
	}
	if nobody > 0 {
		t.Errorf("nobody worked %s at %d of %d looks after new started", tenant, nobody, looks)
	}
}
