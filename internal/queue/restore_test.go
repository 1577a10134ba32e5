package queue

import (
	"maps"
	"slices"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/contoso-secops/mde-offboard/internal/queue/natstest"
	"github.com/contoso-secops/mde-offboard/offboard"
)

// TestRestoreAfterALoneServerRestart: a lone server restarted on its store
// comes back with the request stream, its requests and the unrouted
// consumer, but without the tenants' consumers (their state is in
// memory). Restore makes them again, and they deliver the request that was
// under way when the server went down; a second Restore makes nothing.
func TestRestoreAfterALoneServerRestart(t *testing.T) {
	t.Parallel()
	c := natstest.Start(t, 1)
	_, js := c.Connect(t, nats.MaxReconnects(-1), nats.ReconnectWait(50*time.Millisecond))
	ctx := t.Context()
	s := Settings{Tenants: []string{"contoso"}}
	if _, err := Ensure(ctx, js, s); err != nil {
		t.Fatal(err)
	}
	if _, err := js.Publish(ctx, "mde.offboard.request.contoso", []byte(`{"requestId":"r1"}`)); err != nil {
		t.Fatal(err)
	}
	cons, err := js.Consumer(ctx, offboard.StreamRequests, "tenant-contoso")
	if err != nil {
		t.Fatal(err)
	}
	// Waited for: a consumer made a moment ago may not have taken the
	// request in yet, and a no-wait fetch then finds nothing.
	batch, err := cons.Fetch(1, jetstream.FetchMaxWait(5*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	if n := len(drain(batch)); n != 1 {
		t.Fatalf("fetched %d requests before the restart, want 1", n)
	}

	c.Shutdown(0)
	c.Restart(0)
	var names []string
	deadline := time.Now().Add(10 * time.Second)
	for {
		names = streamConsumers(t, js)
		if slices.Contains(names, ConsumerUnrouted) || time.Now().After(deadline) {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if !slices.Equal(names, []string{ConsumerUnrouted}) {
		t.Fatalf("consumers after the restart: %v; want the unrouted one alone (the tenants' keep their state in memory)", names)
	}
	made, err := Restore(ctx, js, s)
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"tenant-contoso", "bulk-contoso"}; !slices.Equal(made, want) {
		t.Fatalf("Restore made %v, want %v", made, want)
	}
	if err := Check(ctx, js, s); err != nil {
		t.Fatalf("Check after Restore: %v", err)
	}
	batch, err = cons.Fetch(1, jetstream.FetchMaxWait(5*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	msgs := drain(batch)
	if len(msgs) != 1 || string(msgs[0].Data()) != `{"requestId":"r1"}` {
		t.Fatalf("the consumer made again delivered %d requests, want the one under way before the restart", len(msgs))
	}
	if made, err := Restore(ctx, js, s); err != nil || len(made) != 0 {
		t.Fatalf("a second Restore made %v, %v; want nothing", made, err)
	}
}

// TestEnsureMovesFileConsumersToMemory: a tenant's consumer made by an
// earlier version keeps its state in a file, which the server cannot
// change; Ensure makes it again in memory, and the request waiting in the
// stream is delivered by the new one.
func TestEnsureMovesFileConsumersToMemory(t *testing.T) {
	t.Parallel()
	js, s := ensureContoso(t)
	ctx := t.Context()
	earlier := s.Consumers()[0]
	earlier.MemoryStorage = false
	delete(earlier.Metadata, MetaConfig)
	earlier.Metadata[MetaConfig] = configHash(earlier)
	if err := js.DeleteConsumer(ctx, offboard.StreamRequests, earlier.Durable); err != nil {
		t.Fatal(err)
	}
	if _, err := js.CreateConsumer(ctx, offboard.StreamRequests, earlier); err != nil {
		t.Fatal(err)
	}
	if _, err := js.Publish(ctx, "mde.offboard.request.contoso", []byte(`{"requestId":"r1"}`)); err != nil {
		t.Fatal(err)
	}
	if _, err := Ensure(ctx, js, s); err != nil {
		t.Fatal(err)
	}
	cons, err := js.Consumer(ctx, offboard.StreamRequests, earlier.Durable)
	if err != nil {
		t.Fatal(err)
	}
	if info := cons.CachedInfo(); !info.Config.MemoryStorage || info.NumPending != 1 {
		t.Fatalf("%s after Ensure: state in memory %v, %d requests pending; want true and 1", earlier.Durable, info.Config.MemoryStorage, info.NumPending)
	}
	for _, cfg := range s.Consumers() {
		if want := cfg.Durable != ConsumerUnrouted; cfg.MemoryStorage != want {
			t.Errorf("%s: state in memory %v, want %v", cfg.Durable, cfg.MemoryStorage, want)
		}
	}
}

// drain reads a batch to its end.
func drain(b jetstream.MessageBatch) []jetstream.Msg {
	var out []jetstream.Msg
	for m := range b.Messages() {
		out = append(out, m)
	}
	return out
}

// streamConsumers lists the request stream's consumers, sorted; none
// while the stream is not back yet.
func streamConsumers(t *testing.T, js jetstream.JetStream) []string {
	t.Helper()
	stream, err := requestStream(t.Context(), js)
	if err != nil {
		return nil
	}
	have, err := consumerNames(t.Context(), stream)
	if err != nil {
		return nil
	}
	return slices.Sorted(maps.Keys(have))
}

// TestRestoreMakesConsumersForRequestsLetGo: a request of a tenant not
// configured here, with no consumer of its tenant, is the unrouted
// consumer's to answer until it has delivered it and OrphanAge has passed;
// then it may have been let go while the tenant was served and its
// consumer lost since (a lone server's restart). Restore then makes that
// consumer, as a stale one, so that the request is answered rather than
// left.
func TestRestoreMakesConsumersForRequestsLetGo(t *testing.T) {
	t.Parallel()
	js, s := ensureContoso(t)
	ctx := t.Context()
	s.OrphanAge = 300 * time.Millisecond
	if _, err := js.Publish(ctx, "mde.offboard.request.fabrikam", []byte(`{"requestId":"f1"}`)); err != nil {
		t.Fatal(err)
	}
	if made, err := Restore(ctx, js, s); err != nil || len(made) != 0 {
		t.Fatalf("Restore while the request is younger than OrphanAge: made %v, %v; want nothing", made, err)
	}
	time.Sleep(s.OrphanAge)
	if made, err := Restore(ctx, js, s); err != nil || len(made) != 0 {
		t.Fatalf("Restore before the unrouted consumer delivered the request (it lags): made %v, %v; want nothing", made, err)
	}
	unrouted, err := js.Consumer(ctx, offboard.StreamRequests, ConsumerUnrouted)
	if err != nil {
		t.Fatal(err)
	}
	batch, err := unrouted.Fetch(1, jetstream.FetchMaxWait(5*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range drain(batch) {
		if err := m.DoubleAck(ctx); err != nil { // let go: fabrikam was served
			t.Fatal(err)
		}
	}
	made, err := Restore(ctx, js, s)
	if err != nil || !slices.Equal(made, []string{"tenant-fabrikam"}) {
		t.Fatalf("Restore once the request was let go and waited OrphanAge: made %v, %v; want tenant-fabrikam", made, err)
	}
	if stale, err := Stale(ctx, js, s); err != nil || !slices.Equal(stale, []string{"tenant-fabrikam"}) {
		t.Fatalf("Stale: %v, %v; want tenant-fabrikam", stale, err)
	}
	if made, err := Restore(ctx, js, s); err != nil || len(made) != 0 {
		t.Fatalf("a second Restore made %v, %v; want nothing", made, err)
	}
}
