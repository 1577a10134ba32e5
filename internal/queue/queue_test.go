package queue

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/contoso-secops/mde-offboard/internal/queue/natstest"
	"github.com/contoso-secops/mde-offboard/offboard"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/goleak"
)

var update = flag.Bool("update", false, "rewrite deploy/nats from the code")

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// connect starts an embedded NATS server with JetStream and connects to it.
func connect(t *testing.T) (*nats.Conn, jetstream.JetStream) {
	t.Helper()
	nc, js := natstest.Connect(t)
	return nc, js
}

func TestEnsureIsIdempotent(t *testing.T) {
	t.Parallel()
	_, js := connect(t)
	// "a" and "a-bulk" are both valid tenant names: their consumers must
	// not collide.
	s := Settings{Tenants: []string{"contoso", "fabrikam", "a", "a-bulk"}}
	if err := Check(t.Context(), js, s); err == nil {
		t.Fatal("Check passed before anything was created")
	}
	for range 2 {
		if _, err := Ensure(t.Context(), js, s); err != nil {
			t.Fatal(err)
		}
	}
	// A tenant dropped from the configuration keeps its consumers (removing
	// them would drop their requests), reported as stale; a consumer that
	// is not the worker's is left alone.
	if _, err := js.CreateOrUpdateConsumer(t.Context(), offboard.StreamRequests, jetstream.ConsumerConfig{
		Durable: "bulk-export", FilterSubject: "mde.offboard.request.contoso", AckPolicy: jetstream.AckExplicitPolicy,
	}); err != nil {
		t.Fatal(err)
	}
	stale, err := Ensure(t.Context(), js, Settings{Tenants: []string{"contoso", "a", "a-bulk"}})
	slices.Sort(stale)
	if err != nil || !slices.Equal(stale, []string{"bulk-fabrikam", "tenant-fabrikam"}) {
		t.Fatalf("Ensure without fabrikam: stale %v, %v", stale, err)
	}
	for _, name := range []string{"bulk-fabrikam", "bulk-export"} {
		if _, err := js.Consumer(t.Context(), offboard.StreamRequests, name); err != nil {
			t.Fatalf("consumer %s: %v", name, err)
		}
	}
	if _, err := Ensure(t.Context(), js, s); err != nil {
		t.Fatal(err)
	}
	if err := Check(t.Context(), js, s); err != nil {
		t.Fatal(err)
	}
	// A request of 64 KiB is taken with its headers; a message beyond the
	// room for them is refused at publish time.
	full := nats.NewMsg("mde.offboard.request.contoso")
	full.Data = make([]byte, offboard.MaxRequestSize)
	full.Header.Set(jetstream.MsgIDHeader, "contoso:"+strings.Repeat("r", 128))
	full.Header.Set("Traceparent", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
	if _, err := js.PublishMsg(t.Context(), full); err != nil {
		t.Errorf("a 64 KiB request with its headers: %v", err)
	}
	if _, err := js.Publish(t.Context(), "mde.offboard.request.contoso", make([]byte, offboard.MaxRequestMessage+1)); err == nil {
		t.Error("oversize request accepted")
	}
}

// TestEnsureUpdatesOnlyWhatChanged: a worker starting over consumers set up
// as it would set them sends the server no consumer update; a change of
// the settings updates the consumers it touches, and a consumer removed
// by hand is made again.
func TestEnsureUpdatesOnlyWhatChanged(t *testing.T) {
	t.Parallel()
	nc, js := connect(t)
	// updated runs Ensure and returns the consumers it created or updated:
	// $JS.API.CONSUMER.CREATE.<stream>.<consumer>[.<filter>].
	updated := setupRequests(t, nc, js, "$JS.API.CONSUMER.CREATE.>", func(subj string) string { return strings.Split(subj, ".")[5] })
	s := Settings{Tenants: []string{"contoso", "fabrikam"}, Limits: map[string]string{"contoso": "100/1m"}}
	if got := updated(s); len(got) != 5 {
		t.Fatalf("first setup created %v, want 5 consumers", got)
	}
	if got := updated(s); len(got) != 0 {
		t.Fatalf("setup over the same settings updated %v", got)
	}
	s.Limits["contoso"] = "50/1m"
	if got, want := updated(s), []string{"bulk-contoso", "tenant-contoso"}; !slices.Equal(got, want) {
		t.Fatalf("a tenant's limits changed: updated %v, want %v", got, want)
	}
	c, err := js.Consumer(t.Context(), offboard.StreamRequests, "bulk-contoso")
	if err != nil || c.CachedInfo().Config.Metadata[MetaLimits] != "50/1m" {
		t.Fatalf("bulk-contoso after the update: %v, %v", c, err)
	}
	s.AckWait = 2 * time.Minute
	if got := updated(s); len(got) != 5 {
		t.Fatalf("the ack wait changed: updated %v, want every consumer", got)
	}
	c, err = js.Consumer(t.Context(), offboard.StreamRequests, "unrouted")
	if err != nil || c.CachedInfo().Config.AckWait != 2*time.Minute {
		t.Fatalf("unrouted after the update: %v, %v", c, err)
	}
	if err := js.DeleteConsumer(t.Context(), offboard.StreamRequests, "tenant-fabrikam"); err != nil {
		t.Fatal(err)
	}
	if got, want := updated(s), []string{"tenant-fabrikam"}; !slices.Equal(got, want) {
		t.Fatalf("a consumer removed by hand: updated %v, want %v", got, want)
	}
	if err := Check(t.Context(), js, s); err != nil {
		t.Fatal(err)
	}
}

func TestSourceServesNormalBeforeBulk(t *testing.T) {
	t.Parallel()
	nc, js := connect(t)
	s := Settings{Tenants: []string{"contoso", "fabrikam"}}
	if _, err := Ensure(t.Context(), js, s); err != nil {
		t.Fatal(err)
	}
	subj := s.WithDefaults().Subjects
	for i := range 5 {
		if _, err := js.Publish(t.Context(), subj.Request("contoso", offboard.Bulk), []byte{byte('a' + i)}); err != nil {
			t.Fatal(err)
		}
	}
	for i := range 2 {
		if _, err := js.Publish(t.Context(), subj.Request("contoso", offboard.Normal), []byte{byte('A' + i)}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := js.Publish(t.Context(), subj.Request("fabrikam", offboard.Normal), []byte("other tenant")); err != nil {
		t.Fatal(err)
	}
	// The server counts a stored request for a consumer a moment after it
	// acknowledged the publish, and a pull that does not wait finds only
	// what it has counted: on a loaded machine the normal lane's pull
	// found nothing yet and bulk was served first. Each lane waits here
	// until its consumer counts its requests.
	for p, want := range map[offboard.Priority]uint64{offboard.Normal: 2, offboard.Bulk: 5} {
		cons, err := js.Consumer(t.Context(), offboard.StreamRequests, ConsumerName("contoso", p))
		if err != nil {
			t.Fatal(err)
		}
		waitFor(t, 10*time.Second, fmt.Sprintf("the %s consumer counts its %d requests", p, want), func() bool {
			info, err := cons.Info(t.Context())
			return err == nil && info.NumPending == want
		})
	}
	r, err := NewRouter(nc, subj)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	src, err := r.Source(t.Context(), js, "contoso", time.Second)
	if err != nil {
		t.Fatal(err)
	}
	var order string
	for range 7 {
		msg, _, err := src.Next(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		order += string(msg.Data())
		if err := msg.Ack(); err != nil {
			t.Fatal(err)
		}
	}
	if order != "ABabcde" {
		t.Fatalf("served %q, want normal first: ABabcde", order)
	}
	n, b, err := src.Backlog(t.Context())
	if err != nil || n != 0 || b != 0 {
		t.Fatalf("backlog after draining = %d, %d, %v", n, b, err)
	}

	// An idle source wakes up for a new request without waiting for its poll.
	got := make(chan string, 1)
	go func() {
		msg, _, err := src.Next(t.Context())
		if err != nil {
			got <- err.Error()
			return
		}
		_ = msg.Ack()
		got <- string(msg.Data())
	}()
	time.Sleep(50 * time.Millisecond)
	start := time.Now()
	if _, err := js.Publish(t.Context(), subj.Request("contoso", offboard.Normal), []byte("late")); err != nil {
		t.Fatal(err)
	}
	if v := <-got; v != "late" {
		t.Fatalf("got %q", v)
	}
	t.Logf("woke up %v after the publish (poll is 1s)", time.Since(start))
}

func TestLedger(t *testing.T) {
	t.Parallel()
	_, js := connect(t)
	if _, err := Ensure(t.Context(), js, Settings{Tenants: []string{"contoso"}}); err != nil {
		t.Fatal(err)
	}
	l, err := NewLedger(t.Context(), js)
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	if e, err := l.Get(ctx, "contoso", "id:1"); e != nil || err != nil {
		t.Fatalf("Get of a new id = %v, %v", e, err)
	}
	first := &Entry{State: StateCalling, Seq: 1, MachineID: "m"}
	if err := l.Put(ctx, "contoso", "id:1", nil, first); err != nil {
		t.Fatal(err)
	}
	if err := l.Put(ctx, "contoso", "id:1", nil, &Entry{State: StateCalling, Seq: 2}); !errors.Is(err, ErrConflict) {
		t.Fatalf("second create = %v, want ErrConflict", err)
	}
	got, err := l.Get(ctx, "contoso", "id:1")
	if err != nil || got.Seq != 1 {
		t.Fatalf("Get = %+v, %v", got, err)
	}
	if err := l.Put(ctx, "contoso", "id:1", got, &Entry{State: StateCalling, Seq: 3}); err != nil {
		t.Fatalf("update at the read revision: %v", err)
	}
	if err := l.Put(ctx, "contoso", "id:1", got, &Entry{State: StateCalling, Seq: 4}); !errors.Is(err, ErrConflict) {
		t.Fatalf("update at a stale revision = %v, want ErrConflict", err)
	}
	cur, _ := l.Get(ctx, "contoso", "id:1")
	if err := l.Finish(ctx, "contoso", "id:1", got, 3, []byte(`{"outcome":"failed"}`)); !errors.Is(err, ErrConflict) {
		t.Fatalf("finish over a stale entry = %v, want ErrConflict", err)
	}
	if err := l.Finish(ctx, "contoso", "id:1", cur, 3, []byte(`{"outcome":"created","attempt":2}`)); err != nil {
		t.Fatal(err)
	}
	if got, _ := l.Get(ctx, "contoso", "id:1"); got.State != StateDone || got.Seq != 3 || got.Attempt != 2 ||
		string(got.Result) != `{"outcome":"created","attempt":2}` {
		t.Fatalf("after Done: %+v", got)
	}
	// Ids are per tenant.
	if e, _ := l.Get(ctx, "fabrikam", "id:1"); e != nil {
		t.Fatal("another tenant sees the id")
	}
}

func TestSubjects(t *testing.T) {
	t.Parallel()
	s := offboard.Subjects{Prefix: "mde.offboard"}
	for subject, want := range map[string]struct {
		tenant string
		p      offboard.Priority
		ok     bool
	}{
		"mde.offboard.request.contoso":        {"contoso", offboard.Normal, true},
		"mde.offboard.request.contoso.bulk":   {"contoso", offboard.Bulk, true},
		"mde.offboard.request.contoso.urgent": {"contoso", "", false},
		"mde.offboard.request.a.b.c":          {"a", "", false},
		"mde.offboard.result.contoso":         {"", "", false},
	} {
		tenant, p, ok := s.ParseRequest(subject)
		if tenant != want.tenant || p != want.p || ok != want.ok {
			t.Errorf("ParseRequest(%q) = %q, %q, %v; want %+v", subject, tenant, p, ok, want)
		}
	}
}

// TestDeployDefinitions keeps deploy/nats in step with the code. Run
// `go test ./internal/queue -run TestDeployDefinitions -update` after a
// change to the streams or consumers.
func TestDeployDefinitions(t *testing.T) {
	s := Settings{Tenants: []string{"contoso"}}
	files := map[string]any{}
	for _, c := range s.Streams() {
		files["stream-"+c.Name+".json"] = c
	}
	for _, c := range s.Consumers() {
		files["consumer-"+c.Durable+".json"] = c
	}
	files["kv-"+offboard.BucketLedger+".json"] = s.Ledger()
	files["kv-"+BucketPresence+".json"] = s.Presence()
	files["kv-"+offboard.BucketControl+".json"] = s.Control()
	files["obj-"+offboard.BucketPlans+".json"] = s.Plans()
	dir := filepath.Join("..", "..", "deploy", "nats")
	for name, v := range files {
		var buf bytes.Buffer
		enc := json.NewEncoder(&buf)
		enc.SetIndent("", "  ")
		enc.SetEscapeHTML(false) // subjects end in '>'
		if err := enc.Encode(v); err != nil {
			t.Fatal(err)
		}
		want := buf.Bytes()
		path := filepath.Join(dir, name)
		if *update {
			if err := os.MkdirAll(dir, 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(path, want, 0o644); err != nil {
				t.Fatal(err)
			}
			continue
		}
		got, err := os.ReadFile(path)
		if err != nil || string(got) != string(want) {
			t.Errorf("%s is not what the code creates; run go test ./internal/queue -run TestDeployDefinitions -update", path)
		}
	}
}

// TestEnsureManyTenants: a NATS server caps a stream at 1000 consumers
// unless the stream says otherwise; 510 tenants need 1021.
func TestEnsureManyTenants(t *testing.T) {
	t.Parallel()
	_, js := connect(t)
	s := manyTenants()
	if _, err := Ensure(t.Context(), js, s); err != nil {
		t.Fatal(err)
	}
	if err := Check(t.Context(), js, s); err != nil {
		t.Fatal(err)
	}
}

// TestEnsureKeepsRoomForAnotherReplicasTenants: replicas with different
// tenants files (a rolling update, a canary) set up the same request
// stream. One with few tenants must not lower the stream's limit of
// consumers under what the consumers of another's tenants need: after a
// lone server's restart, or for a tenant added, they could not be made.
func TestEnsureKeepsRoomForAnotherReplicasTenants(t *testing.T) {
	t.Parallel()
	_, js := connect(t)
	ctx := t.Context()
	many := manyTenants()
	if _, err := Ensure(ctx, js, many); err != nil {
		t.Fatal(err)
	}
	if _, err := Ensure(ctx, js, Settings{Tenants: many.Tenants[:1]}); err != nil {
		t.Fatal(err)
	}
	restoresALostConsumer(t, js, many, "")
}

// TestEnsureKeepsAnUnlimitedMaxConsumers: a request stream an operator
// set to no limit of consumers (-1) keeps none: setup does not set one.
func TestEnsureKeepsAnUnlimitedMaxConsumers(t *testing.T) {
	t.Parallel()
	js, s := ensureContoso(t)
	ctx := t.Context()
	noMaxConsumers(t, js, s)
	if _, err := Ensure(ctx, js, s); err != nil {
		t.Fatal(err)
	}
	stream, err := js.Stream(ctx, offboard.StreamRequests)
	if err != nil {
		t.Fatal(err)
	}
	if n := stream.CachedInfo().Config.MaxConsumers; n != -1 {
		t.Errorf("max_consumers %d, want -1 kept", n)
	}
}

// TestEnsureMovesAnEarlierRequestStreamToLimits: a request stream made by
// an earlier release has interest retention; Ensure changes it in place,
// keeping the requests that wait in it.
func TestEnsureMovesAnEarlierRequestStreamToLimits(t *testing.T) {
	t.Parallel()
	js, s := ensureContoso(t)
	ctx := t.Context()
	cfg := s.Streams()[0]
	cfg.Retention = jetstream.InterestPolicy
	if _, err := js.UpdateStream(ctx, cfg); err != nil {
		t.Fatal(err)
	}
	if _, err := js.Publish(ctx, "mde.offboard.request.contoso", []byte(`{}`)); err != nil {
		t.Fatal(err)
	}
	if _, err := Ensure(ctx, js, s); err != nil {
		t.Fatal(err)
	}
	stream, err := js.Stream(ctx, offboard.StreamRequests)
	if err != nil {
		t.Fatal(err)
	}
	info := stream.CachedInfo()
	if info.Config.Retention != jetstream.LimitsPolicy || info.State.Msgs != 1 {
		t.Errorf("after Ensure: %s retention, %d requests; want limits and the 1 waiting", info.Config.Retention, info.State.Msgs)
	}
}

// TestRetire: a request deleted twice (the first answer lost) is retired
// both times; a delete the server refuses is an error, the request stays.
func TestRetire(t *testing.T) {
	t.Parallel()
	js, _ := ensureContoso(t)
	ctx := t.Context()
	ack, err := js.Publish(ctx, "mde.offboard.request.contoso", []byte(`{}`))
	if err != nil {
		t.Fatal(err)
	}
	requests, err := js.Stream(ctx, offboard.StreamRequests)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 2 {
		if err := Retire(ctx, requests, ack.Sequence); err != nil {
			t.Fatalf("delete %d: %v", i+1, err)
		}
	}
	if info, err := requests.Info(ctx); err != nil || info.State.Msgs != 0 {
		t.Fatalf("request stream after the delete: %+v, %v; want empty", info, err)
	}

	locked, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "LOCKED", Subjects: []string{"locked"}, DenyDelete: true})
	if err != nil {
		t.Fatal(err)
	}
	ack, err = js.Publish(ctx, "locked", []byte(`{}`))
	if err != nil {
		t.Fatal(err)
	}
	if err := Retire(ctx, locked, ack.Sequence); err == nil {
		t.Error("a refused delete was taken for done")
	}
	if info, err := locked.Info(ctx); err != nil || info.State.Msgs != 1 {
		t.Errorf("locked stream: %+v, %v; want its request", info, err)
	}
}

// TestSweepTrustsOnlyTheWorkersConsumers: a tenant's consumer re-created
// by hand to deliver only new requests has an ack floor above requests it
// never saw: the sweep refuses it rather than remove them.
func TestSweepTrustsOnlyTheWorkersConsumers(t *testing.T) {
	t.Parallel()
	js, s := ensureContoso(t)
	ctx := t.Context()
	for range 2 {
		if _, err := js.Publish(ctx, "mde.offboard.request.contoso", []byte(`{}`)); err != nil {
			t.Fatal(err)
		}
	}
	name := ConsumerName("contoso", offboard.Normal)
	if err := js.DeleteConsumer(ctx, offboard.StreamRequests, name); err != nil {
		t.Fatal(err)
	}
	var cfg jetstream.ConsumerConfig
	for _, c := range s.Consumers() {
		if c.Durable == name {
			cfg = c
		}
	}
	cfg.DeliverPolicy = jetstream.DeliverNewPolicy
	cons, err := js.CreateConsumer(ctx, offboard.StreamRequests, cfg)
	if err != nil {
		t.Fatal(err)
	}
	requests, err := js.Stream(ctx, offboard.StreamRequests)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := Sweep(ctx, requests, cons, s.Subjects.Request("contoso", offboard.Normal)); !errors.Is(err, ErrNotSweepable) {
		t.Errorf("sweep of a consumer that delivers new requests only: %v, want ErrNotSweepable", err)
	}
	if info, err := requests.Info(ctx); err != nil || info.State.Msgs != 2 {
		t.Errorf("request stream after the sweep: %+v, %v; want the 2 requests nobody saw", info, err)
	}
}

// TestSweepKeepsRequestsGivenBackInPlace: a sweep removes a request
// acked but left in the stream while two later ones were handed back at
// once (a nak without delay, as a pause or a campaign's cancel does).
// They are the next pull's, in their order. A purge had the server drop
// every request queued for redelivery below its next new one: handed
// back, they came again only after their ack wait, a minute on, behind
// requests published later.
func TestSweepKeepsRequestsGivenBackInPlace(t *testing.T) {
	t.Parallel()
	js, s := ensureContoso(t)
	ctx := t.Context()
	subject := s.Subjects.Request("contoso", offboard.Normal)
	for i := range 4 {
		if _, err := js.Publish(ctx, subject, fmt.Appendf(nil, `{"n":%d}`, i+1)); err != nil {
			t.Fatal(err)
		}
	}
	cons, err := js.Consumer(ctx, offboard.StreamRequests, ConsumerName("contoso", offboard.Normal))
	if err != nil {
		t.Fatal(err)
	}
	got := fetchNow(t, cons, 3)
	if len(got) != 3 {
		t.Fatalf("pulled %d, want 3", len(got))
	}
	if err := got[0].DoubleAck(ctx); err != nil {
		t.Fatal(err)
	}
	if err := NakInOrder(ctx, js, got[1:]); err != nil {
		t.Fatal(err)
	}
	requests, err := js.Stream(ctx, offboard.StreamRequests)
	if err != nil {
		t.Fatal(err)
	}
	if floor, more, err := Sweep(ctx, requests, cons, subject); err != nil || floor != 1 || more {
		t.Fatalf("sweep: %d, %v; want the first request removed", floor, err)
	}
	if _, err := requests.GetMsg(ctx, 1); !errors.Is(err, jetstream.ErrMsgNotFound) {
		t.Errorf("the request acked is still there after the sweep: %v", err)
	}
	var order []string
	for _, m := range fetchNow(t, cons, 3) {
		order = append(order, string(m.Data()))
	}
	if want := []string{`{"n":2}`, `{"n":3}`, `{"n":4}`}; !slices.Equal(order, want) {
		t.Errorf("pulled after the sweep: %v, want %v: the requests given back first, at once", order, want)
	}
}

// fetchNow pulls up to n messages there are now from cons.
func fetchNow(t *testing.T, cons jetstream.Consumer, n int) []jetstream.Msg {
	t.Helper()
	batch, err := cons.FetchNoWait(n)
	if err != nil {
		t.Fatal(err)
	}
	var msgs []jetstream.Msg
	for m := range batch.Messages() {
		msgs = append(msgs, m)
	}
	if err := batch.Error(); err != nil && !errors.Is(err, jetstream.ErrNoMessages) {
		t.Fatal(err)
	}
	return msgs
}

// ensureContoso starts a NATS server with the worker's streams and
// consumers for tenant contoso.
func ensureContoso(t *testing.T) (jetstream.JetStream, Settings) {
	t.Helper()
	_, js := connect(t)
	s := Settings{Tenants: []string{"contoso"}}
	if _, err := Ensure(t.Context(), js, s); err != nil {
		t.Fatal(err)
	}
	return js, s
}

// TestSweepUnroutedRemovesOnlyWhatNoConsumerHolds: the unrouted consumer
// acks a served tenant's requests without answering them, and a tenant's
// consumer may be lost (its state is in memory) with such a request still
// waiting. Its sweep removes only the answered requests that no tenant's
// consumer could hold (a subject of no contract form); a well-formed
// tenant's, served or not, stay for the tenant's consumer, made again.
func TestSweepUnroutedRemovesOnlyWhatNoConsumerHolds(t *testing.T) {
	t.Parallel()
	js, s := ensureContoso(t)
	ctx := t.Context()
	// contoso's let go, the others answered
	unrouted := unroutedAcked(t, js, "mde.offboard.request.contoso", "mde.offboard.request.nobody", "mde.offboard.request.a.b")
	if err := js.DeleteConsumer(ctx, offboard.StreamRequests, ConsumerName("contoso", offboard.Normal)); err != nil {
		t.Fatal(err)
	}
	requests, err := js.Stream(ctx, offboard.StreamRequests)
	if err != nil {
		t.Fatal(err)
	}
	swept, _, err := SweepUnrouted(ctx, requests, unrouted, s.Subjects)
	if err != nil || !slices.Equal(swept, []string{"mde.offboard.request.a.b"}) {
		t.Errorf("swept %v, %v; want the subject of no contract form only", swept, err)
	}
	if _, err := Ensure(ctx, js, s); err != nil {
		t.Fatal(err)
	}
	cons, err := js.Consumer(ctx, offboard.StreamRequests, ConsumerName("contoso", offboard.Normal))
	if err != nil {
		t.Fatal(err)
	}
	if info, err := cons.Info(ctx); err != nil || info.NumPending != 1 {
		t.Errorf("contoso's consumer made again: %+v, %v; want its 1 request waiting", info, err)
	}
	info, err := requests.Info(ctx, jetstream.WithSubjectFilter("mde.offboard.request.nobody"))
	if err != nil {
		t.Fatal(err)
	}
	if n := info.State.Subjects["mde.offboard.request.nobody"]; n != 1 {
		t.Errorf("nobody's requests: %d; want its 1 left for its tenant's consumer (Restore)", n)
	}
}

// TestEnsureSetsBackAConsumerEditedByHand: an operator edits a tenant's
// consumer (nats consumer edit), keeping its metadata: another filter, a
// delivery limit. The unrouted consumer still lets the tenant's requests
// go to it, so requests it no longer holds, or drops, are never answered.
// The next start sets it back as the worker makes it.
func TestEnsureSetsBackAConsumerEditedByHand(t *testing.T) {
	t.Parallel()
	js, s := ensureContoso(t)
	ctx := t.Context()
	name := editContosoConsumer(t, js, func(c *jetstream.ConsumerConfig) {
		c.FilterSubject = "mde.offboard.request.contoso.x"
		c.MaxDeliver = 3
	})
	if _, err := Ensure(ctx, js, s); err != nil {
		t.Fatal(err)
	}
	c, err := js.Consumer(ctx, offboard.StreamRequests, name)
	if err != nil {
		t.Fatal(err)
	}
	if cfg := c.CachedInfo().Config; cfg.FilterSubject != "mde.offboard.request.contoso" || cfg.MaxDeliver != -1 {
		t.Errorf("%s after setup: filter %q, max deliver %d; want mde.offboard.request.contoso, -1", name, cfg.FilterSubject, cfg.MaxDeliver)
	}
}

// TestSweepUnroutedLeavesWildcardSubjectsAlone: a server not in pedantic
// mode stores a request published on a subject with a wildcard token
// (mde.offboard.request.*), which the unrouted consumer answers. Its
// subject, taken as a purge filter, matches every tenant's requests: the
// sweep must not remove the waiting requests of other tenants with it.
func TestSweepUnroutedLeavesWildcardSubjectsAlone(t *testing.T) {
	t.Parallel()
	js, s := ensureContoso(t)
	ctx := t.Context()
	// contoso's let go, the others answered (their deletes lost)
	unrouted := unroutedAcked(t, js, "mde.offboard.request.contoso", "mde.offboard.request.contoso.bulk",
		"mde.offboard.request.*", "mde.offboard.request.*.bulk", "mde.offboard.request.>")
	requests, err := js.Stream(ctx, offboard.StreamRequests)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := SweepUnrouted(ctx, requests, unrouted, s.Subjects); err != nil {
		t.Fatal(err)
	}
	info, err := requests.Info(ctx, jetstream.WithSubjectFilter("mde.offboard.request.contoso.>"))
	if err != nil {
		t.Fatal(err)
	}
	normal, err := requests.Info(ctx, jetstream.WithSubjectFilter("mde.offboard.request.contoso"))
	if err != nil {
		t.Fatal(err)
	}
	if n, b := normal.State.Subjects["mde.offboard.request.contoso"], info.State.Subjects["mde.offboard.request.contoso.bulk"]; n != 1 || b != 1 {
		t.Errorf("contoso's requests after the sweep: normal %d, bulk %d; want both waiting for its consumers", n, b)
	}
}

// TestClusterForming: the server's "no suitable peers for placement" is a
// cluster not ready yet, however wrapped; its other refusals are not.
func TestClusterForming(t *testing.T) {
	t.Parallel()
	noPeers := &jetstream.APIError{Code: 500, ErrorCode: 10005, Description: "no suitable peers for placement"}
	if !ClusterForming(fmt.Errorf("prepare streams: %w", errors.Join(fmt.Errorf("stream %s: %w", offboard.StreamRequests, noPeers)))) {
		t.Error("no suitable peers, wrapped and joined: not taken for a cluster forming")
	}
	for _, err := range []error{
		nil,
		errors.New("no suitable peers for placement"), // the text alone is not the server's answer
		&jetstream.APIError{Code: 400, ErrorCode: jetstream.JSErrCodeStreamNameInUse, Description: "stream name already in use"},
		&jetstream.APIError{Code: 503, ErrorCode: 10039, Description: "jetstream not enabled for account"},
	} {
		if ClusterForming(err) {
			t.Errorf("%v taken for a cluster forming", err)
		}
	}
}

// TestNotReady: setup waits for NATS only when every part of its failure
// is NATS not ready yet; a server without JetStream, or one refusal among
// the parts, stops it.
func TestNotReady(t *testing.T) {
	t.Parallel()
	noPeers := &jetstream.APIError{Code: 500, ErrorCode: 10005, Description: "no suitable peers for placement"}
	unavailable := &jetstream.APIError{Code: 503, ErrorCode: 10008, Description: "JetStream system temporarily unavailable"}
	noJetStream := &jetstream.APIError{Code: 503, ErrorCode: 10039, Description: "jetstream not enabled for account"}
	stream := func(err error) error { return fmt.Errorf("stream %s: %w", offboard.StreamRequests, err) }
	for _, c := range []struct {
		err  error
		want bool
	}{
		{nil, false},
		{stream(noPeers), true},
		{stream(unavailable), true},
		{stream(context.DeadlineExceeded), true},
		{stream(nats.ErrTimeout), true},
		{errors.Join(stream(unavailable), stream(context.DeadlineExceeded)), true},
		{stream(nats.ErrNoResponders), false},
		{stream(noJetStream), false},
		{errors.Join(stream(unavailable), stream(noJetStream)), false},
		{errors.Join(stream(context.DeadlineExceeded), errors.New("consumer tenant-a: bad config")), false},
		{context.Canceled, false},
	} {
		if got := NotReady(c.err); got != c.want {
			t.Errorf("NotReady(%v) = %v, want %v", c.err, got, c.want)
		}
	}
}

// unroutedAcked publishes a request on each subject, and has the unrouted
// consumer take them all and ack them, as it does a request it lets go or
// answers; it returns that consumer.
func unroutedAcked(t *testing.T, js jetstream.JetStream, subjects ...string) jetstream.Consumer {
	t.Helper()
	ctx := t.Context()
	for _, subject := range subjects {
		if _, err := js.Publish(ctx, subject, []byte(`{}`)); err != nil {
			t.Fatal(err)
		}
	}
	unrouted, err := js.Consumer(ctx, offboard.StreamRequests, ConsumerUnrouted)
	if err != nil {
		t.Fatal(err)
	}
	batch, err := unrouted.Fetch(len(subjects), jetstream.FetchMaxWait(5*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	for m := range batch.Messages() {
		if err := m.DoubleAck(ctx); err != nil {
			t.Fatal(err)
		}
	}
	return unrouted
}

// TestEnsureSetsBackPullLimitsEditedByHand: a tenant's consumer whose
// pull limits were lowered by hand (nats consumer edit --max-pull-batch 1)
// refuses every pull of more requests than that ("Exceeded
// MaxRequestBatch"), and one whose pull wait was bounded refuses the
// pulls that wait for a request just published: the tenant's requests
// were never delivered, and setup left the consumer as it was, its
// metadata unchanged. Setup sets the limits back.
func TestEnsureSetsBackPullLimitsEditedByHand(t *testing.T) {
	t.Parallel()
	js, s := ensureContoso(t)
	ctx := t.Context()
	name := editContosoConsumer(t, js, func(c *jetstream.ConsumerConfig) {
		c.MaxRequestBatch = 1
		c.MaxRequestExpires = 10 * time.Millisecond
		c.MaxRequestMaxBytes = 100
	})
	if _, err := Ensure(ctx, js, s); err != nil {
		t.Fatal(err)
	}
	c, err := js.Consumer(ctx, offboard.StreamRequests, name)
	if err != nil {
		t.Fatal(err)
	}
	if cfg := c.CachedInfo().Config; cfg.MaxRequestBatch != 0 || cfg.MaxRequestExpires != 0 || cfg.MaxRequestMaxBytes != 0 {
		t.Errorf("%s after setup: max pull batch %d, expires %v, max bytes %d; want none",
			name, cfg.MaxRequestBatch, cfg.MaxRequestExpires, cfg.MaxRequestMaxBytes)
	}
}

// TestRestoreRaisesALoweredMaxConsumers: the request stream's limit of
// consumers can be lowered under what this replica's tenants need after
// it set the stream up: by a replica of an earlier release, which sets
// its own (a rollback, a canary), or by a replica with fewer tenants
// whose setup read the limit just before this one raised it. The
// consumers this replica lost with a lone server's restart then could
// not be made again ("maximum consumers limit reached") until it
// restarted. Restore raises the limit back before it makes them.
func TestRestoreRaisesALoweredMaxConsumers(t *testing.T) {
	t.Parallel()
	_, js := connect(t)
	ctx := t.Context()
	many := manyTenants()
	if _, err := Ensure(ctx, js, many); err != nil {
		t.Fatal(err)
	}
	few := Settings{Tenants: many.Tenants[:1]}.Streams()[0] // as a setup that does not keep the limit sets it
	if _, err := js.UpdateStream(ctx, few); err != nil {
		t.Fatal(err)
	}
	restoresALostConsumer(t, js, many, " under a lowered limit")
	stream, err := js.Stream(ctx, offboard.StreamRequests)
	if err != nil {
		t.Fatal(err)
	}
	if n, want := stream.CachedInfo().Config.MaxConsumers, many.Streams()[0].MaxConsumers; n != want {
		t.Errorf("max_consumers %d after Restore, want %d", n, want)
	}
}

// TestEnsureRaisesAnUnlimitedMaxConsumersTheServerCaps: a request stream
// whose limit of consumers is -1 (no limit set: an earlier release, an
// operator) is not unlimited on a server with the default settings,
// which then caps it at 1000 consumers. Setup kept the -1, and a worker
// with more than 500 tenants could not make their consumers: it did not
// start. The -1 is kept while the consumers fit under it; when the
// server refuses one for the limit, the worker's limit is set.
func TestEnsureRaisesAnUnlimitedMaxConsumersTheServerCaps(t *testing.T) {
	t.Parallel()
	js, s := ensureContoso(t)
	ctx := t.Context()
	noMaxConsumers(t, js, s)
	many := manyTenants()
	if _, err := Ensure(ctx, js, many); err != nil {
		t.Fatalf("setup of 510 tenants on a stream of no limit: %v", err)
	}
	if err := Check(ctx, js, many); err != nil {
		t.Fatal(err)
	}
}

// setupRequests subscribes to the JetStream API requests on subject and
// returns a func that runs Ensure over s and the names (name of each
// request's subject) of the requests it sent, sorted.
func setupRequests(t *testing.T, nc *nats.Conn, js jetstream.JetStream, subject string, name func(string) string) func(Settings) []string {
	t.Helper()
	// A channel the client's reader fills as each request arrives, before
	// it reads the flush's answer: a handler runs on a goroutine of its
	// own, and after the flush it could still be about to count one.
	seen := make(chan *nats.Msg, 100)
	sub, err := nc.ChanSubscribe(subject, seen)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sub.Unsubscribe() })
	return func(s Settings) []string {
		t.Helper()
		if _, err := Ensure(t.Context(), js, s); err != nil {
			t.Fatal(err)
		}
		if err := nc.Flush(); err != nil { // the subscription has seen every request
			t.Fatal(err)
		}
		var names []string
		for {
			select {
			case m := <-seen:
				names = append(names, name(m.Subject))
			default:
				slices.Sort(names)
				return names
			}
		}
	}
}

// manyTenants is the settings of 510 tenants, t000 to t509: their
// consumers are more than a server's default cap of 1000.
func manyTenants() Settings {
	s := Settings{}
	for i := range 510 {
		s.Tenants = append(s.Tenants, fmt.Sprintf("t%03d", i))
	}
	return s
}

// noMaxConsumers sets the request stream of s to no limit of consumers
// (-1), as an operator or an earlier release may.
func noMaxConsumers(t *testing.T, js jetstream.JetStream, s Settings) {
	t.Helper()
	cfg := s.Streams()[0]
	cfg.MaxConsumers = -1
	if _, err := js.UpdateStream(t.Context(), cfg); err != nil {
		t.Fatal(err)
	}
}

// restoresALostConsumer deletes the bulk consumer of t509, the last of
// manyTenants, and checks that Restore over many makes it again, and it
// alone; how says under what ("" or " under a lowered limit").
func restoresALostConsumer(t *testing.T, js jetstream.JetStream, many Settings, how string) {
	t.Helper()
	if err := js.DeleteConsumer(t.Context(), offboard.StreamRequests, ConsumerName("t509", offboard.Bulk)); err != nil {
		t.Fatal(err)
	}
	if made, err := Restore(t.Context(), js, many); err != nil || !slices.Equal(made, []string{"bulk-t509"}) {
		t.Errorf("the many tenants' replica restores its lost consumer%s: made %v, %v", how, made, err)
	}
}

// editContosoConsumer changes contoso's normal consumer as an operator's
// nats consumer edit would, its metadata kept, and returns its name.
func editContosoConsumer(t *testing.T, js jetstream.JetStream, edit func(*jetstream.ConsumerConfig)) string {
	t.Helper()
	name := ConsumerName("contoso", offboard.Normal)
	c, err := js.Consumer(t.Context(), offboard.StreamRequests, name)
	if err != nil {
		t.Fatal(err)
	}
	edited := c.CachedInfo().Config
	edit(&edited)
	if _, err := js.UpdateConsumer(t.Context(), offboard.StreamRequests, edited); err != nil {
		t.Fatal(err)
	}
	return name
}

// TestSweepSaysWhenMoreAreLeft: a sweep removes sweepMax answered requests
// of a subject at most, and says when more are left, so that the stats
// loop goes on at its next pass; the next sweep removes the rest and says
// none are. The same for the unrouted consumer's subjects.
func TestSweepSaysWhenMoreAreLeft(t *testing.T) {
	t.Parallel()
	js, s := ensureContoso(t)
	ctx := t.Context()
	noForm := slices.Repeat([]string{"mde.offboard.request.a.b"}, sweepMax+1)
	unrouted := unroutedAcked(t, js, noForm...)
	requests, err := js.Stream(ctx, offboard.StreamRequests)
	if err != nil {
		t.Fatal(err)
	}
	for i, want := range []bool{true, false} {
		swept, more, err := SweepUnrouted(ctx, requests, unrouted, s.Subjects)
		if err != nil || more != want || !slices.Equal(swept, noForm[:1]) {
			t.Errorf("unrouted sweep %d: %v, more left %v, %v; want %v, %v", i+1, swept, more, err, noForm[:1], want)
		}
	}

	subject := s.Subjects.Request("contoso", offboard.Normal)
	cons, err := js.Consumer(ctx, offboard.StreamRequests, ConsumerName("contoso", offboard.Normal))
	if err != nil {
		t.Fatal(err)
	}
	for range sweepMax + 1 {
		if _, err := js.Publish(ctx, subject, []byte(`{}`)); err != nil {
			t.Fatal(err)
		}
	}
	for acked := 0; acked <= sweepMax; {
		msgs := fetchNow(t, cons, min(100, sweepMax+1-acked))
		if len(msgs) == 0 {
			t.Fatalf("%d of %d requests delivered", acked, sweepMax+1)
		}
		for _, m := range msgs {
			if err := m.DoubleAck(ctx); err != nil {
				t.Fatal(err)
			}
		}
		acked += len(msgs)
	}
	for i, want := range []bool{true, false} {
		if last, more, err := Sweep(ctx, requests, cons, subject); err != nil || more != want || last == 0 {
			t.Errorf("sweep %d: up to %d, more left %v, %v; want some removed, %v", i+1, last, more, err, want)
		}
	}
	if info, err := requests.Info(ctx); err != nil || info.State.Msgs != 0 {
		t.Errorf("request stream after the sweeps: %+v, %v; want empty", info, err)
	}
}
