package app

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/contoso-secops/mde-offboard/internal/queue/natstest"
)

// fullServer starts a NATS server whose JetStream storage (max_file_store)
// is taken up by another stream, and connects the publisher to it.
func fullServer(e *env) string {
	t := e.t
	t.Helper()
	url := natstest.StartWithOptions(t, func(o *server.Options) { o.JetStreamMaxStore = 1 << 20 })
	e.connect(url)
	if _, err := e.js.CreateStream(t.Context(), jetstream.StreamConfig{Name: "OTHER", Subjects: []string{"other"}}); err != nil {
		t.Fatal(err)
	}
	body := make([]byte, 60<<10)
	for {
		_, err := e.js.Publish(t.Context(), "other", body)
		var api *jetstream.APIError
		if errors.As(err, &api) && api.ErrorCode == 10023 { // insufficient resources
			return url
		}
		if err != nil {
			t.Fatal(err)
		}
	}
}

// TestStartOnAServerOutOfStorageEndsAtOnce: a start whose first write
// NATS refuses (its JetStream storage full: the replica's announcement is
// not stored) fails at once, saying so. Before, the start waited for the
// whole stop limit (45 s) before it returned: the failed service's end
// had been read by the start, and its cleanup waited for it again.
func TestStartOnAServerOutOfStorageEndsAtOnce(t *testing.T) {
	t.Parallel()
	e := setup(t, envConfig{tenants: []string{"contoso"}, machines: 1, noStart: true})
	o := e.opts
	o.NATSURL = fullServer(e)
	a, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = a.Stop(context.Background()) })
	began := time.Now()
	err = a.Start(t.Context())
	if err == nil || !strings.Contains(err.Error(), "insufficient resources") {
		t.Fatalf("start: %v, want NATS's refusal", err)
	}
	if took := time.Since(began); took >= a.stopLimit()/2 {
		t.Errorf("start failed after %v: it waited for the stop limit (%v)", took, a.stopLimit())
	}
}
