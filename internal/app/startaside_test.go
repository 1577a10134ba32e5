package app

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/contoso-secops/mde-offboard/internal/queue"
)

// TestReplicaStartingTakesNoTenantBeforeItsJournalIsRead: a replica that
// starts has not read the quota journal yet, and makes no call until it
// has (seconds for a journal of many busy tenants): its first
// announcement says it makes no call, so the running replica keeps its
// tenants meanwhile, and the new one takes its share once it can call.
// Before, the first announcement took the new replica's share of the
// tenants from the other at once, and they waited for its journal.
func TestReplicaStartingTakesNoTenantBeforeItsJournalIsRead(t *testing.T) {
	t.Parallel()
	names := numberedTenants(8)
	e := setup(t, envConfig{tenants: names, machines: 1, noStart: true})
	e.opts.ReplicaID = "replica-a"
	e.start()
	kv, err := e.js.KeyValue(t.Context(), queue.BucketPresence)
	if err != nil {
		t.Fatal(err)
	}
	w, err := kv.Watch(t.Context(), "replica-b", jetstream.UpdatesOnly())
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = w.Stop() }()
	e.opts.ReplicaID = "replica-b"
	b := e.startReplica(names...)
	select {
	case entry := <-w.Updates():
		var a struct {
			Aside bool `json:"aside"`
		}
		if err := json.Unmarshal(entry.Value(), &a); err != nil {
			t.Fatal(err)
		}
		if !a.Aside {
			t.Errorf("B's first announcement %s does not say B makes no call yet; want aside until its quota journal is read", entry.Value())
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no announcement of B")
	}
	eventually(t, 10*time.Second, "the tenants split between A and B", func() bool {
		onA, onB := assignedTenants(t, e.reg), assignedTenants(t, b.opts.Registry)
		return len(onA)+len(onB) == len(names) && len(onA) > 0 && len(onB) > 0
	})
}
