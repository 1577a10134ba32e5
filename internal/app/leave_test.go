package app

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/contoso-secops/mde-offboard/internal/queue"
)

// TestStopAnnouncesLeavingWhenHurried: a stop whose caller's context has
// already ended (a second signal that came at once) still tells the other
// replicas that this one stops, so its tenants move at once. Before, the
// announcement was written with the caller's context and failed; the
// tenants moved only when the announcement was withdrawn at the end of
// the stop, or expired.
func TestStopAnnouncesLeavingWhenHurried(t *testing.T) {
	t.Parallel()
	e := setup(t, envConfig{tenants: []string{"contoso"}})
	kv, err := e.js.KeyValue(t.Context(), queue.BucketPresence)
	if err != nil {
		t.Fatal(err)
	}
	w, err := kv.WatchAll(t.Context(), jetstream.UpdatesOnly())
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = w.Stop() }()
	hurried, cancel := context.WithCancel(context.Background())
	cancel()
	if err := e.app.Stop(hurried); err != nil {
		t.Fatal(err)
	}
	deadline := time.After(10 * time.Second)
	for {
		select {
		case u := <-w.Updates():
			if u == nil || u.Operation() != jetstream.KeyValuePut {
				continue
			}
			var a struct {
				Leaving bool `json:"leaving"`
			}
			if json.Unmarshal(u.Value(), &a) == nil && a.Leaving {
				return
			}
		case <-deadline:
			t.Fatal("no announcement that the replica stops")
		}
	}
}
