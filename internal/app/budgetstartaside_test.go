package app

import (
	"encoding/json"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/contoso-secops/mde-offboard/internal/queue"
	"github.com/contoso-secops/mde-offboard/offboard"
)

// TestReplicaStartingTakesNoTenantBeforeItsBudgetJournalIsRead: a
// replica that starts reads the budget journal's whole history (a day of
// created actions), which takes longer than the quota journal's last
// minutes, and takes no budget slot, so makes no call of a tenant with a
// budget, until it has. Its announcements say it makes no call until
// both are read. Before, it took its share of the tenants once the quota
// journal was read, and their requests waited for the budget journal.
func TestReplicaStartingTakesNoTenantBeforeItsBudgetJournalIsRead(t *testing.T) {
	t.Parallel()
	names := numberedTenants(8)
	e := setup(t, envConfig{tenants: names, machines: 1, extra: "    guards:\n      budget: \"10/1h\"\n", noStart: true})
	e.opts.PresenceBeat = 300 * time.Millisecond
	e.opts.ReplicaID = "replica-a"
	e.start()
	// Entries of another process, none of which takes a slot: the day's
	// history that a start reads.
	entry, err := json.Marshal(map[string]any{"w": "elsewhere", "t": time.Now().UnixNano()})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 40000 {
		if _, err := e.js.PublishAsync(offboard.Subjects{}.Budget(names[i%len(names)]), entry); err != nil {
			t.Fatal(err)
		}
		if i%1000 == 999 { // within the client's bound on messages awaiting their answer
			select {
			case <-e.js.PublishAsyncComplete():
			case <-time.After(30 * time.Second):
				t.Fatal("budget entries not stored")
			}
		}
	}
	kv, err := e.js.KeyValue(t.Context(), queue.BucketPresence)
	if err != nil {
		t.Fatal(err)
	}
	w, err := kv.Watch(t.Context(), "replica-b", jetstream.UpdatesOnly())
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = w.Stop() }()
	var (
		mu       sync.Mutex
		canCall  time.Time // when B's first announcement that it can call came
		watching = make(chan struct{})
	)
	go func() {
		defer close(watching)
		for entry := range w.Updates() {
			if entry == nil {
				continue
			}
			var a struct {
				Aside bool `json:"aside"`
			}
			if json.Unmarshal(entry.Value(), &a) == nil && !a.Aside {
				mu.Lock()
				canCall = time.Now()
				mu.Unlock()
				return
			}
		}
	}()
	e.opts.ReplicaID = "replica-b"
	b := e.startReplica(names...)
	started := time.Now()
	// The last look that found the budget journal not read yet: an
	// announcement that B can call before it is too early.
	var unread time.Time
	eventually(t, 30*time.Second, "B's budget journal read", func() bool {
		if b.budget.CaughtUp() {
			return true
		}
		unread = time.Now()
		return false
	})
	select {
	case <-watching:
	case <-time.After(10 * time.Second):
		t.Fatal("no announcement of B saying it can call")
	}
	mu.Lock()
	defer mu.Unlock()
	if unread.IsZero() {
		// The history is long enough that reading it outlasts the start
		// (0.2 s and more after the start without -race, 1.7 s under it): a start that
		// waits for it, or a history read at once, leaves this test
		// nothing to compare.
		t.Fatal("B's budget journal was read before its start returned: nothing to compare; make its history longer")
	}
	t.Logf("B's budget journal read %v after its start returned", unread.Sub(started).Round(time.Millisecond))
	if canCall.Before(unread) {
		t.Errorf("B announced it can call %v before its budget journal was found read yet; want aside until it is read", unread.Sub(canCall).Round(time.Millisecond))
	}
}
