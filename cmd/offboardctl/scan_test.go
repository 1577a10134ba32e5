package main

import (
	"context"
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/contoso-secops/mde-offboard/internal/limiter"
	"github.com/contoso-secops/mde-offboard/internal/mde"
	"github.com/contoso-secops/mde-offboard/internal/queue"
	"github.com/contoso-secops/mde-offboard/internal/queue/natstest"
	"github.com/contoso-secops/mde-offboard/offboard"
)

// TestScanGoesOnAfterAnEmptyFetch: a fetch that brings nothing in its
// wait (a slow or busy server; here a first wait too short for any
// answer) ends a scan only when the stream holds nothing more on the
// subject. A scan
// cut short had campaign run publish rows again that still waited, and
// cancel and dead retry miss what was stored.
func TestScanGoesOnAfterAnEmptyFetch(t *testing.T) {
	t.Parallel()
	_, js := natsWithStreams(t)
	const stored = 2000
	for i := range stored {
		m := nats.NewMsg(offboard.Subjects{}.Dead("contoso"))
		m.Data = fmt.Appendf(nil, `{"requestId":"d-%d"}`, i)
		if _, err := js.PublishMsgAsync(m); err != nil {
			t.Fatal(err)
		}
	}
	select {
	case <-js.PublishAsyncComplete():
	case <-time.After(time.Minute):
		t.Fatal("publish")
	}
	read := 0
	if err := scanWaiting(t.Context(), js, offboard.StreamDead, offboard.Subjects{}.Dead("contoso"), time.Time{}, time.Nanosecond, func(jetstream.Msg) { read++ }); err != nil {
		t.Fatal(err)
	}
	if read != stored {
		t.Errorf("scan read %d of %d messages", read, stored)
	}
}

// TestJournalReadGoesOnAfterAnEmptyFetch: status reads a tenant's quota
// journal as scan reads a stream (scanWaiting): a first fetch that finds
// nothing, as on a slow server, does not end the read while entries are
// stored. Before, readJournal ended at the first empty fetch, and status
// showed calls left that were spent.
func TestJournalReadGoesOnAfterAnEmptyFetch(t *testing.T) {
	t.Parallel()
	_, js := natsWithStreams(t)
	const calls = 300
	start := time.Now()
	for i := range calls {
		at := start.Add(time.Duration(i) * time.Millisecond).UnixNano()
		ev, _ := json.Marshal(limiter.Event{Writer: "w1", Reserved: []limiter.Call{{API: mde.APIOffboard, ID: uint64(i + 1), At: at}},
			Done: []limiter.Call{{API: mde.APIOffboard, ID: uint64(i + 1), At: at}}})
		if _, err := js.PublishAsync(offboard.Subjects{}.Quota("contoso"), ev); err != nil {
			t.Fatal(err)
		}
	}
	select {
	case <-js.PublishAsyncComplete():
	case <-time.After(time.Minute):
		t.Fatal("publish")
	}
	j := journalOf{offboard.StreamQuota, offboard.Subjects{}.Quota("contoso"), mde.APIOffboard, 0}
	got, _, err := readJournal(t.Context(), js, j, start.Add(-time.Minute), time.Nanosecond)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != calls {
		t.Errorf("read %d of %d calls from the journal", len(got), calls)
	}
}

// TestStatusOfManyTenantsWithCalls: status of tenants that each made
// offboard calls within the hour reads each one's quota journal without
// waiting out a fetch: the read ends at the last entry stored. Each read
// waited out its last fetch (300 ms) for entries that were not coming,
// and status of a few dozen such tenants ran past its bound (four times
// --connect-timeout) and showed nothing.
func TestStatusOfManyTenantsWithCalls(t *testing.T) {
	t.Parallel()
	nc, js := natstest.Connect(t)
	names := make([]string, 40)
	for i := range names {
		names[i] = fmt.Sprintf("tenant-%02d", i)
	}
	if _, err := queue.Ensure(t.Context(), js, queue.Settings{Tenants: names}); err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	for _, name := range names {
		for i := range 3 {
			at := now.Add(-time.Duration(i) * time.Second).UnixNano()
			ev, _ := json.Marshal(limiter.Event{Writer: "w1", Reserved: []limiter.Call{{API: mde.APIOffboard, ID: uint64(i + 1), At: at}},
				Done: []limiter.Call{{API: mde.APIOffboard, ID: uint64(i + 1), At: at}}})
			if _, err := js.PublishAsync(offboard.Subjects{}.Quota(name), ev); err != nil {
				t.Fatal(err)
			}
		}
	}
	select {
	case <-js.PublishAsyncComplete():
	case <-time.After(time.Minute):
		t.Fatal("publish")
	}
	start := time.Now()
	code, out, errs := ctl(t, nc.ConnectedUrl(), "--connect-timeout", "2s", "status", "--json")
	took := time.Since(start)
	var sts []tenantStatus
	if code != exitOK || json.Unmarshal([]byte(out), &sts) != nil || len(sts) != len(names) {
		t.Fatalf("status of %d tenants: exit %d after %v, stderr %q", len(names), code, took, errs)
	}
	for _, st := range sts {
		if len(st.Quota) == 0 || st.Quota[0].Used != 3 {
			t.Errorf("%s: quota %+v, want 3 calls used", st.Tenant, st.Quota)
		}
	}
	if took > 4*time.Second {
		t.Errorf("status of %d tenants took %v", len(names), took)
	}
}

// unansweredJS is a JetStream whose ordered consumers have their first
// pulls answered "no responders" (natstest.Unanswered).
type unansweredJS struct {
	jetstream.JetStream
	u *natstest.Unanswered
}

func (js unansweredJS) OrderedConsumer(ctx context.Context, stream string, cfg jetstream.OrderedConsumerConfig) (jetstream.Consumer, error) {
	c, err := js.JetStream.OrderedConsumer(ctx, stream, cfg)
	if err != nil {
		return nil, err
	}
	return js.u.Wrap(c), nil
}

// TestScanRidesOutPullsUnanswered: an ordered consumer makes its reader
// anew at each fetch and pulls it at once; on a freshly made three-server
// cluster the server answered such a pull "no responders" (it had not yet
// learnt which server leads the reader), and campaign run ended, exit 1,
// before publishing a row ("read mde.offboard.request.contoso.bulk: nats:
// no responders available for request"). A scan sends such pulls again
// and reads every message.
func TestScanRidesOutPullsUnanswered(t *testing.T) {
	t.Parallel()
	_, js := natsWithStreams(t)
	subject := offboard.Subjects{}.Dead("contoso")
	for i := range 50 {
		if _, err := js.Publish(t.Context(), subject, fmt.Appendf(nil, `{"requestId":"d-%d"}`, i)); err != nil {
			t.Fatal(err)
		}
	}
	u := natstest.NewUnanswered(t, js, offboard.StreamDead, 3)
	read := 0
	if err := scan(t.Context(), unansweredJS{js, u}, offboard.StreamDead, subject, func(jetstream.Msg) { read++ }); err != nil || read != 50 {
		t.Fatalf("after %d pulls unanswered: read %d of 50: %v", u.Sent(), read, err)
	}
}
