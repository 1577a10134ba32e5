package queue

import (
	"fmt"
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/contoso-secops/mde-offboard/offboard"
)

// TestReadUndeliveredReadsPastTheDelivered: with a lane's first requests
// delivered and not acked, ReadUndelivered reads the rest of the lane in
// their order (no other tenant's or priority's), up to the last one
// stored when it began, and leaves the consumer as it was: the same
// requests delivered and pending, the next pull the next request.
// MDE_OFFBOARD_BEHIND_N sets the lane's size (default 1000) to measure a
// larger one.
func TestReadUndeliveredReadsPastTheDelivered(t *testing.T) {
	t.Parallel()
	nc, js := connect(t)
	s := Settings{Tenants: []string{"contoso", "fabrikam"}}
	if _, err := Ensure(t.Context(), js, s); err != nil {
		t.Fatal(err)
	}
	subj := s.WithDefaults().Subjects
	total := 1000
	if n, err := strconv.Atoi(os.Getenv("MDE_OFFBOARD_BEHIND_N")); err == nil && n > 300 {
		total = n
	}
	for i := range total {
		if _, err := js.PublishAsync(subj.Request("contoso", offboard.Bulk), fmt.Appendf(nil, "%d", i+1)); err != nil {
			t.Fatal(err)
		}
		if i%10 == 0 {
			// Other lanes between them: not read.
			if _, err := js.PublishAsync(subj.Request("contoso", offboard.Normal), []byte("normal")); err != nil {
				t.Fatal(err)
			}
			if _, err := js.PublishAsync(subj.Request("fabrikam", offboard.Bulk), []byte("fabrikam")); err != nil {
				t.Fatal(err)
			}
		}
		if (i+1)%1000 == 0 || i == total-1 {
			select {
			case <-js.PublishAsyncComplete():
			case <-time.After(30 * time.Second):
				t.Fatal("not stored within 30 s")
			}
		}
	}
	requests, err := js.Stream(t.Context(), offboard.StreamRequests)
	if err != nil {
		t.Fatal(err)
	}
	cons, err := js.Consumer(t.Context(), offboard.StreamRequests, ConsumerName("contoso", offboard.Bulk))
	if err != nil {
		t.Fatal(err)
	}
	const delivered = 200
	batch, err := cons.Fetch(delivered, jetstream.FetchMaxWait(5*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	got := 0
	for range batch.Messages() {
		got++
	}
	if got != delivered {
		t.Fatalf("%d delivered, want %d", got, delivered)
	}

	before := nc.Stats()
	start := time.Now()
	next := delivered + 1
	read, err := ReadUndelivered(t.Context(), requests, cons, func(m *jetstream.RawStreamMsg) {
		if string(m.Data) != strconv.Itoa(next) {
			t.Fatalf("read %q (seq %d), want %d: the lane's requests after those delivered, in their order", m.Data, m.Sequence, next)
		}
		next++
	})
	took := time.Since(start)
	after := nc.Stats()
	if err != nil {
		t.Fatal(err)
	}
	if read != total-delivered {
		t.Fatalf("read %d, want %d", read, total-delivered)
	}
	t.Logf("read %d requests waiting behind %d delivered in %v: %d messages to the server, %d from it",
		read, delivered, took.Round(time.Millisecond), after.OutMsgs-before.OutMsgs, after.InMsgs-before.InMsgs)

	info, err := cons.Info(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if info.NumAckPending != delivered || info.NumPending != uint64(total-delivered) {
		t.Errorf("consumer after the read: %d pending acks, %d undelivered, want %d and %d", info.NumAckPending, info.NumPending, delivered, total-delivered)
	}
	m, err := cons.Next(jetstream.FetchMaxWait(5 * time.Second))
	if err != nil {
		t.Fatal(err)
	}
	if string(m.Data()) != strconv.Itoa(delivered+1) {
		t.Errorf("next delivery %q, want %d", m.Data(), delivered+1)
	}
	// The reader is gone with the read.
	names := requests.ConsumerNames(t.Context())
	n := 0
	for range names.Name() {
		n++
	}
	if want := len(s.Consumers()); n != want {
		t.Errorf("%d consumers after the read, want the worker's %d", n, want)
	}
}
