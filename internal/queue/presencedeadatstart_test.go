package queue

import (
	"encoding/json"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// TestPresenceStartedAfterADeathLeavesNoTenantUnworked: a replica that
// died without withdrawing its announcement is gone for the replica
// serving its tenants since; a replica that starts later (the dead one's
// pod rescheduled under a new name) reads its announcement, stored long
// before by the server's clock, as that of a replica gone too. Each
// tenant the dead one ranked first is worked by one of the two live ones
// at every look. Before, the new replica read it as a sign of life and
// left those tenants to the dead one for three beats after its start,
// while the other gave them to the new one: nobody worked them (15 s at
// the default beat).
func TestPresenceStartedAfterADeathLeavesNoTenantUnworked(t *testing.T) {
	t.Parallel()
	_, js := connect(t)
	startedAfterADeath(t, js, js)
}

// startedAfterADeath leaves a dead replica's announcement in the presence
// bucket, starts replica "old" over js, which takes the dead one's
// tenant once its announcement expired, then replica "new" over
// newJS, and checks that one of the two works the tenant at every look
// for the three beats new could count the dead one alive.
func startedAfterADeath(t *testing.T, js, newJS jetstream.JetStream) {
	t.Helper()
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
	started := startAsidePresence(t, newJS, "new", &never, tenant)
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
