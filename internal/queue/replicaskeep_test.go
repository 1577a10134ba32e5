package queue

import (
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/zap"

	"github.com/contoso-secops/mde-offboard/internal/queue/natstest"
	"github.com/contoso-secops/mde-offboard/offboard"
)

// TestEnsureNeverLowersTheReplicas: on a three-node cluster whose streams
// have three replicas, a replica started with --stream-replicas 1 (the
// default: a flag forgotten in a rolling update, a canary) sets up the
// same streams. It must not take away the copies the others rely on:
// with one copy, the node that holds it losing its disk loses the
// requests waiting there, the quota journal and the ledger. Setup keeps
// the higher count.
func TestEnsureNeverLowersTheReplicas(t *testing.T) {
	t.Parallel()
	c, js := clusterSetUpWithThreeReplicas(t)
	ctx := t.Context()
	for i := range 5 {
		if _, err := js.Publish(ctx, "mde.offboard.request.contoso", []byte{byte('0' + i)}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := Ensure(ctx, js, Settings{Tenants: []string{"contoso"}, Replicas: 1}); err != nil {
		t.Fatal(err)
	}
	for name := range js.StreamNames(ctx).Name() {
		s, err := js.Stream(ctx, name)
		if err != nil {
			t.Fatal(err)
		}
		if r := s.CachedInfo().Config.Replicas; r != 3 {
			t.Errorf("stream %s has %d replicas after a replica of --stream-replicas 1 set it up, want 3 kept", name, r)
		}
	}
	// The node leading the request stream loses its disk: the requests
	// are still there, from the others.
	settled(t, js, offboard.StreamRequests)
	i := c.StreamLeader(ctx, js, offboard.StreamRequests)
	c.Shutdown(i)
	c.Wipe(i)
	c.Restart(i)
	var msgs uint64
	for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		if info, err := streamInfo(t, js, offboard.StreamRequests); err == nil {
			if msgs = info.State.Msgs; msgs == 5 {
				return
			}
		}
	}
	t.Fatalf("%d requests of 5 left after the node that led their stream lost its disk", msgs)
}

// streamInfo reads a stream's state from its leader.
func streamInfo(t *testing.T, js jetstream.JetStream, name string) (*jetstream.StreamInfo, error) {
	t.Helper()
	s, err := js.Stream(t.Context(), name)
	if err != nil {
		return nil, err
	}
	return s.Info(t.Context())
}

// settled waits until the stream has as many copies as it is set to.
func settled(t *testing.T, js jetstream.JetStream, name string) {
	t.Helper()
	for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		info, err := streamInfo(t, js, name)
		if err == nil && info.Cluster != nil && len(info.Cluster.Replicas) == info.Config.Replicas-1 {
			return
		}
	}
	t.Fatalf("stream %s: its copies not as set after 20s", name)
}

// TestPresenceRemakeKeepsTheReplicas: a replica whose announcement fails
// as if the presence bucket were gone (no responders during a leader
// election) makes it again. It made it with its own --stream-replicas
// over the bucket that was there: a replica of --stream-replicas 1 took
// a three-node cluster's presence bucket down to one copy. It now only
// makes a bucket that is not there.
func TestPresenceRemakeKeepsTheReplicas(t *testing.T) {
	t.Parallel()
	_, js := clusterSetUpWithThreeReplicas(t)
	ctx := t.Context()
	p, err := NewPresence(ctx, js, PresenceOptions{ID: "a", Tenants: []string{"contoso"},
		Bucket: Settings{Tenants: []string{"contoso"}, Replicas: 1}.Presence(), Logger: zap.NewNop()})
	if err != nil {
		t.Fatal(err)
	}
	if err := p.remake(ctx); err != nil {
		t.Fatal(err)
	}
	info, err := streamInfo(t, js, "KV_"+BucketPresence)
	if err != nil {
		t.Fatal(err)
	}
	if r := info.Config.Replicas; r != 3 {
		t.Errorf("presence bucket has %d replicas after its remake by a replica of --stream-replicas 1, want 3", r)
	}
}

// clusterSetUpWithThreeReplicas starts a three-node cluster and sets up
// the streams of tenant contoso with three replicas each.
func clusterSetUpWithThreeReplicas(t *testing.T) (*natstest.Cluster, jetstream.JetStream) {
	t.Helper()
	c := natstest.Start(t, 3)
	_, js := c.Connect(t)
	if _, err := Ensure(t.Context(), js, Settings{Tenants: []string{"contoso"}, Replicas: 3}); err != nil {
		t.Fatal(err)
	}
	return c, js
}
