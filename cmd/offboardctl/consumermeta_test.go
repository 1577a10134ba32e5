package main

import (
	"strings"
	"testing"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/contoso-secops/mde-offboard/internal/queue"
	"github.com/contoso-secops/mde-offboard/offboard"
)

// TestStatusReadsOnlyTheWorkersConsumers: status finds the tenants by the
// worker's consumers. A consumer made by hand that carries the worker's
// metadata (a copy for a look at the requests, or one made to forge lines:
// the operators' credential may make consumers of its own) neither names
// a tenant nor stands in for a tenant's consumer, and what a consumer's
// metadata holds is shown printable.
func TestStatusReadsOnlyTheWorkersConsumers(t *testing.T) {
	t.Parallel()
	url, js := natsWithStreams(t)
	if _, err := js.Publish(t.Context(), offboard.Subjects{}.Request("contoso", offboard.Bulk), []byte(`{}`)); err != nil {
		t.Fatal(err)
	}
	const forged = "x\ncontoso: bulk paused by mallory\x1b[2J"
	for name, meta := range map[string]map[string]string{
		// A copy of contoso's normal consumer, reading its bulk requests.
		"zz-copy": {queue.MetaTenant: "contoso", queue.MetaPriority: "normal"},
		"forged":  {queue.MetaTenant: forged, queue.MetaPriority: "normal"},
		// A name of the worker's form, with a budget no worker records.
		queue.ConsumerName("evil", offboard.Normal): {queue.MetaTenant: "evil", queue.MetaPriority: "normal", queue.MetaBudget: forged},
	} {
		filter := offboard.Subjects{}.Request("contoso", offboard.Bulk)
		if name == queue.ConsumerName("evil", offboard.Normal) {
			filter = offboard.Subjects{}.Request("evil", offboard.Normal)
		}
		if _, err := js.CreateConsumer(t.Context(), offboard.StreamRequests, jetstream.ConsumerConfig{
			Durable: name, Metadata: meta, FilterSubject: filter, AckPolicy: jetstream.AckExplicitPolicy,
		}); err != nil {
			t.Fatal(err)
		}
	}
	code, out, errs := ctl(t, url, "status")
	if code != exitOK {
		t.Fatalf("status: exit %d, stderr %q", code, errs)
	}
	for line := range strings.Lines(out) {
		if strings.HasPrefix(line, "contoso: bulk") || strings.Contains(line, "\x1b") || strings.HasPrefix(line, "x") {
			t.Errorf("line %q forged by a consumer's metadata", line)
		}
		if strings.HasPrefix(line, "contoso ") && !strings.Contains(line, "normal 0, bulk 1") {
			t.Errorf("contoso's line %q: want its own consumers' backlog, normal 0, bulk 1", line)
		}
	}
}
