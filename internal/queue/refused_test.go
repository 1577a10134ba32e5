package queue

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"testing"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/contoso-secops/mde-offboard/internal/queue/natstest"
)

// TestStoreRefusedForALimitIsNoOutage: NATS answers a message it will not
// store for a limit (a stream at its max_msgs or max_bytes that discards
// new messages, a bucket full, the server's JetStream storage full) with
// a 503, as it answers a stream without a leader. Such a refusal lasts
// until an operator acts: it is no outage, whose steps are taken again
// within 250 ms (a request answered again four times a second, for ever,
// each time logged), and it says what to do.
func TestStoreRefusedForALimitIsNoOutage(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	_, js := natstest.Connect(t)
	full := func(name string, cfg jetstream.StreamConfig) {
		cfg.Name, cfg.Subjects, cfg.Discard = name, []string{name}, jetstream.DiscardNew
		if _, err := js.CreateStream(ctx, cfg); err != nil {
			t.Fatal(err)
		}
		if _, err := js.Publish(ctx, name, make([]byte, 100)); err != nil {
			t.Fatal(err)
		}
	}
	full("MSGS", jetstream.StreamConfig{MaxMsgs: 1})
	full("BYTES", jetstream.StreamConfig{MaxBytes: 200})
	kv, err := js.CreateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: "FULL", MaxBytes: 200})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := kv.Put(ctx, "a", make([]byte, 100)); err != nil {
		t.Fatal(err)
	}
	refusals := map[string]error{}
	_, refusals["max messages"] = js.Publish(ctx, "MSGS", []byte("x"))
	_, refusals["max bytes"] = js.Publish(ctx, "BYTES", make([]byte, 100))
	_, refusals["bucket full"] = kv.Create(ctx, "b", make([]byte, 100))
	s, _, err := PublishJSONAsync(js, "MSGS", "id", []byte("{}"))
	if err != nil {
		t.Fatal(err)
	}
	refusals["stored side by side"] = WaitStored(ctx, s)
	refusals["server out of storage"] = outOfStorage(t)
	for what, err := range refusals {
		if err == nil {
			t.Errorf("%s: stored", what)
			continue
		}
		if Outage(err) {
			t.Errorf("%s: %v taken for an outage", what, err)
		}
		if !StoreRefused(err) {
			t.Errorf("%s: %v not told as a refusal for a limit", what, err)
		}
	}
	if err := context.DeadlineExceeded; StoreRefused(err) || !Outage(err) {
		t.Errorf("%v: told as a refusal, or not as an outage", err)
	}
}

// outOfStorage is the refusal of a server whose JetStream storage
// (max_file_store) is full.
func outOfStorage(t *testing.T) error {
	t.Helper()
	_, js := natstest.ConnectTo(t, natstest.StartWithOptions(t, func(o *server.Options) { o.JetStreamMaxStore = 1 << 20 }))
	if _, err := js.CreateStream(t.Context(), jetstream.StreamConfig{Name: "ALL", Subjects: []string{"all"}}); err != nil {
		t.Fatal(err)
	}
	for range 100 {
		if _, err := js.Publish(t.Context(), "all", make([]byte, 60<<10)); err != nil {
			var api *jetstream.APIError
			if !errors.As(err, &api) {
				t.Fatal(err)
			}
			return err
		}
	}
	t.Fatal("100 messages of 60 KiB stored under a max_file_store of 1 MiB")
	return nil
}

// TestStoreClosedIsAnOutage: nats-server answers a message that reaches a
// stream whose store is closing (its server shutting down in a rolling
// restart, a replica's stream reset to catch up with its leader) with
// the code of a store refused, 10077, as it answers a stream full. That
// one passes once the stream is back: an outage, taken again within
// 250 ms, not a limit for an operator to raise (its request was left for
// 5 s and an error told to raise a limit). The answers are the server's
// own, as its client reads them.
func TestStoreClosedIsAnOutage(t *testing.T) {
	t.Parallel()
	answer := func(se *server.ApiError) error {
		data, err := json.Marshal(se)
		if err != nil {
			t.Fatal(err)
		}
		var api jetstream.APIError
		if err := json.Unmarshal(data, &api); err != nil {
			t.Fatal(err)
		}
		return fmt.Errorf("nats: %w", &api)
	}
	closed := answer(server.NewJSStreamStoreFailedError(server.ErrStoreClosed, server.Unless(server.ErrStoreClosed)))
	if StoreRefused(closed) || !Outage(closed) {
		t.Errorf("%v: told as a refusal for a limit, or not as an outage", closed)
	}
	for _, limit := range []error{server.ErrMaxMsgs, server.ErrMaxBytes, server.ErrMaxMsgsPerSubject, server.ErrMsgTooLarge} {
		if err := answer(server.NewJSStreamStoreFailedError(limit, server.Unless(limit))); !StoreRefused(err) || Outage(err) {
			t.Errorf("%v: not told as a refusal for a limit, or told as an outage", err)
		}
	}
}
