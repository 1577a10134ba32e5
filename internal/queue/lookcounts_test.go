package queue

import (
	"context"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/contoso-secops/mde-offboard/offboard"
)

// TestLookAfterDropReadsNoCounts: when wake-ups were dropped, every
// source looks at its consumers (lookAfterDrop) and, finding nothing,
// polls once more a moment later in case the request was not stored yet.
// An idle tenant that handed out nothing since its counts said it had
// nothing under way goes back to idle after that poll's pulls, without
// reading its consumers' counts: each look had every tenant read them, a
// thousand tenants' 2000 consumer infos in one burst on the server's
// JetStream API queue every 5 s while the drops went on, and all of them
// counting together again. Its next counts stay where they were due.
func TestLookAfterDropReadsNoCounts(t *testing.T) {
	t.Parallel()
	tenants := tenantNames("d", 20)
	nc, js, r, _ := routed(t, tenants...)
	const poll = 50 * time.Millisecond
	srcs := make([]*Source, len(tenants))
	due := make([]time.Time, len(tenants))
	for i, name := range tenants {
		src, err := r.Source(t.Context(), js, name, poll)
		if err != nil {
			t.Fatal(err)
		}
		srcs[i] = src
		src.mu.Lock()
		due[i] = src.counted.Add(src.idle)
		src.mu.Unlock()
	}
	infos := countInfos(t, nc)
	ctx, cancel := context.WithTimeout(t.Context(), 20*poll)
	defer cancel()
	done := make(chan error, len(srcs))
	for _, src := range srcs {
		src.lookAfterDrop()
		go func() {
			_, err := src.NextBatch(ctx, 1, offboard.Normal, offboard.Bulk)
			done <- err
		}()
	}
	for range srcs {
		if err := <-done; err == nil {
			t.Fatal("an idle tenant was handed a request")
		}
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	if n := infos.Load(); n != 0 {
		t.Errorf("%d consumer info requests from %d idle tenants after a look for dropped wake-ups, want 0", n, len(srcs))
	}
	now := time.Now()
	for i, src := range srcs {
		src.mu.Lock()
		busy := src.busy
		src.mu.Unlock()
		if busy {
			t.Errorf("%s still busy after its look found nothing", tenants[i])
		}
		if next := now.Add(src.untilPoll(now)); !next.Equal(due[i]) {
			t.Errorf("%s counts next at %v, want %v as before the look", tenants[i], next.Format(time.StampMilli), due[i].Format(time.StampMilli))
		}
	}
}

// TestLookAfterDropStillCountsWhatIsUnderWay: a tenant that handed out a
// request since its counts reads them after a look that found nothing,
// as before: the request may come back.
func TestLookAfterDropStillCountsWhatIsUnderWay(t *testing.T) {
	t.Parallel()
	nc, js, r, subj := routed(t, "away")
	const poll = 50 * time.Millisecond
	src, err := r.Source(t.Context(), js, "away", poll)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := js.Publish(t.Context(), subj.Request("away", offboard.Normal), []byte("one")); err != nil {
		t.Fatal(err)
	}
	ds, err := src.NextBatch(t.Context(), 1, offboard.Normal, offboard.Bulk)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = ds[0].Msg.Ack() }) // under way until then
	infos := countInfos(t, nc)
	src.lookAfterDrop()
	ctx, cancel := context.WithTimeout(t.Context(), 20*poll)
	defer cancel()
	if ds, err := src.NextBatch(ctx, 1, offboard.Normal, offboard.Bulk); err == nil {
		t.Fatalf("handed %q, want nothing", ds[0].Msg.Data())
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	if n := infos.Load(); n < 2 {
		t.Errorf("%d consumer info requests from a tenant with a request under way, want its counts read", n)
	}
}

// TestWakeUpForARequestTakenElsewhereStillCounts: a tenant woken for a
// request that another client of its consumer took (another replica)
// finds nothing, and reads the counts after its next poll, as before:
// the request is under way there, and may come back.
func TestWakeUpForARequestTakenElsewhereStillCounts(t *testing.T) {
	t.Parallel()
	nc, js, r, subj := routed(t, "shared")
	const poll = 50 * time.Millisecond
	src, err := r.Source(t.Context(), js, "shared", poll)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := js.Publish(t.Context(), subj.Request("shared", offboard.Normal), []byte("one")); err != nil {
		t.Fatal(err)
	}
	other, err := js.Consumer(t.Context(), offboard.StreamRequests, ConsumerName("shared", offboard.Normal))
	if err != nil {
		t.Fatal(err)
	}
	batch, err := other.Fetch(1, jetstream.FetchMaxWait(5*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	m, ok := <-batch.Messages()
	if !ok {
		t.Fatalf("the other client got no request: %v", batch.Error())
	}
	t.Cleanup(func() { _ = m.Ack() }) // under way there until then
	deadline := time.Now().Add(5 * time.Second)
	for heard := false; !heard; {
		if time.Now().After(deadline) {
			t.Fatal("the wake-up never came")
		}
		time.Sleep(time.Millisecond)
		src.mu.Lock()
		heard = src.lanes[0].woken
		src.mu.Unlock()
	}
	infos := countInfos(t, nc)
	ctx, cancel := context.WithTimeout(t.Context(), 20*poll)
	defer cancel()
	if ds, err := src.NextBatch(ctx, 1, offboard.Normal, offboard.Bulk); err == nil {
		t.Fatalf("handed %q, taken by the other client", ds[0].Msg.Data())
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	if n := infos.Load(); n < 2 {
		t.Errorf("%d consumer info requests from a tenant woken for a request under way elsewhere, want its counts read", n)
	}
}
