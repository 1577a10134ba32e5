package app

import (
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/contoso-secops/mde-offboard/internal/queue"
	"github.com/contoso-secops/mde-offboard/offboard"
)

// staleOldco makes the consumers of tenant oldco as a worker that served
// it would have: not configured in e, they are stale at e's next start.
func staleOldco(t *testing.T, e *env) {
	t.Helper()
	for _, p := range []offboard.Priority{offboard.Normal, offboard.Bulk} {
		if _, err := e.js.CreateOrUpdateConsumer(t.Context(), offboard.StreamRequests, jetstream.ConsumerConfig{
			Durable: queue.ConsumerName("oldco", p), FilterSubject: e.opts.Queue.Subjects.Request("oldco", p),
			Metadata:      map[string]string{queue.MetaTenant: "oldco", queue.MetaPriority: string(p)},
			DeliverPolicy: jetstream.DeliverAllPolicy, AckPolicy: jetstream.AckExplicitPolicy, MaxDeliver: -1,
		}); err != nil {
			t.Fatal(err)
		}
	}
}

// staleEnv starts a worker for contoso to which oldco's consumers are
// stale, with its log observed.
func staleEnv(t *testing.T) (*env, *observer.ObservedLogs) {
	t.Helper()
	core, logs := observer.New(zap.InfoLevel)
	e := setup(t, envConfig{tenants: []string{"contoso"}, machines: 1, logger: zap.New(core)})
	staleOldco(t, e)
	e.stop()
	// A replica that withdraws its announcement counts as serving its
	// tenants for three beats more: short ones, for the tests' waits.
	e.opts.PresenceBeat = time.Second
	e.start()
	return e, logs
}

// removeOldco removes oldco's consumers of the given priorities and waits
// until the worker has seen it (requests let go before that stay
// unanswered, for an operator to see).
func removeOldco(t *testing.T, e *env, logs *observer.ObservedLogs, prios ...offboard.Priority) {
	t.Helper()
	seen := logs.FilterMessageSnippet("no longer configured removed").Len()
	for _, p := range prios {
		if err := e.js.DeleteConsumer(t.Context(), offboard.StreamRequests, queue.ConsumerName("oldco", p)); err != nil {
			t.Fatal(err)
		}
	}
	eventually(t, 10*time.Second, "the removal seen", func() bool {
		return logs.FilterMessageSnippet("no longer configured removed").Len() >= seen+len(prios)
	})
}

// oldcoAnsweredUnknown publishes a normal request of oldco and wants it
// answered unknown_tenant, once, and gone from the stream.
func oldcoAnsweredUnknown(t *testing.T, e *env, id string, before func()) {
	t.Helper()
	c := e.collect("mde.offboard.result.>")
	e.publish("mde.offboard.request.oldco", map[string]any{"requestId": id, "machineId": newID()}, "oldco:"+id)
	if before != nil {
		before()
	}
	got := c.wait(t, 1, 10*time.Second)
	if rs := got["oldco/"+id]; len(rs) != 1 || rs[0].Error == nil || rs[0].Error.Code != offboard.CodeUnknownTenant {
		t.Errorf("oldco's request %s: %+v, want one unknown_tenant", id, rs)
	}
	eventually(t, 10*time.Second, "request stream empty", func() bool { return e.streamMsgs(offboard.StreamRequests) == 0 })
}

// TestRemovedStaleConsumerHandsItsTenantToUnrouted: the consumers of a
// tenant no longer configured hold its requests until an operator removes
// them; from then on its new requests are answered unknown_tenant (not
// let go to a consumer that is gone, unanswered) and leave the stream.
// Removing the normal one alone hands over the normal requests.
func TestRemovedStaleConsumerHandsItsTenantToUnrouted(t *testing.T) {
	t.Parallel()
	for name, prios := range map[string][]offboard.Priority{
		"both":   {offboard.Normal, offboard.Bulk},
		"normal": {offboard.Normal},
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			e, logs := staleEnv(t)
			removeOldco(t, e, logs, prios...)
			oldcoAnsweredUnknown(t, e, "o-1", nil)
		})
	}
}

// TestStaleConsumerMadeAgainHoldsItsRequests: a removed stale consumer
// made again (its tenant configured again on another replica, which then
// leaves) holds the tenant's requests once more, and this worker answers
// them from it, once the tenant of the replica that left no longer counts
// as served (three beats after it withdrew).
func TestStaleConsumerMadeAgainHoldsItsRequests(t *testing.T) {
	t.Parallel()
	e, logs := staleEnv(t)
	removeOldco(t, e, logs, offboard.Normal, offboard.Bulk)
	staleOldco(t, e) // replica b's set-up makes them again, and b announces oldco
	kv, err := e.js.KeyValue(t.Context(), queue.BucketPresence)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := kv.Put(t.Context(), "replica-b", []byte(`{"tenants":["oldco"]}`)); err != nil {
		t.Fatal(err)
	}
	time.Sleep(500 * time.Millisecond)
	oldcoAnsweredUnknown(t, e, "o-1", func() {
		time.Sleep(time.Second)                                     // let go to b's consumer
		if err := kv.Delete(t.Context(), "replica-b"); err != nil { // b leaves before taking it
			t.Fatal(err)
		}
	})
}

// TestRemovedStaleConsumerIsNoLongerPolled: once the worker has seen that
// an operator removed the consumers of a tenant no longer configured, it
// stops asking the server for them. Each removed tenant otherwise kept two
// goroutines asking for its consumers' info every poll for as long as the
// worker ran: a thousand tenants removed over the weeks made a thousand
// JetStream requests a second.
func TestRemovedStaleConsumerIsNoLongerPolled(t *testing.T) {
	t.Parallel()
	e, logs := staleEnv(t)
	var mu sync.Mutex
	infos := 0
	sub, err := e.nc.Subscribe("$JS.API.CONSUMER.INFO."+offboard.StreamRequests+".*", func(m *nats.Msg) {
		if strings.Contains(m.Subject, "oldco") {
			mu.Lock()
			infos++
			mu.Unlock()
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = sub.Unsubscribe() }()
	removeOldco(t, e, logs, offboard.Normal, offboard.Bulk)
	time.Sleep(2 * e.opts.Poll) // the looks under way at the removal end
	mu.Lock()
	before := infos
	mu.Unlock()
	time.Sleep(10 * e.opts.Poll)
	mu.Lock()
	after := infos
	mu.Unlock()
	if after != before {
		t.Errorf("%d info requests for oldco's removed consumers in %s, want none", after-before, 10*e.opts.Poll)
	}
	// Its new requests are answered through the unrouted consumer.
	oldcoAnsweredUnknown(t, e, "o-1", nil)
}
