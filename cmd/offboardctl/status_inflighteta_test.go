package main

import (
	"testing"
	"time"

	"github.com/contoso-secops/mde-offboard/internal/limiter"
	"github.com/contoso-secops/mde-offboard/internal/mde"
	"github.com/contoso-secops/mde-offboard/internal/queue"
	"github.com/contoso-secops/mde-offboard/internal/queue/natstest"
	"github.com/contoso-secops/mde-offboard/offboard"
)

// TestStatusETAOfARequestInFlightBehindAFullWindow: a tenant limited to
// 1/1h made its call a minute ago, and its one request left is fetched
// and not answered (its first attempt answered 500, say: it waits for the
// hour's window to try again). Nothing waits in the stream. Its next
// call can go out 59 minutes from now; status said "now", where campaign
// run and campaign status, which count the requests in flight less the
// calls under way, say 59 minutes.
func TestStatusETAOfARequestInFlightBehindAFullWindow(t *testing.T) {
	t.Parallel()
	_, js := natstest.Connect(t)
	s := queue.Settings{Tenants: []string{"contoso"}, Limits: map[string]string{"contoso": "1/1h0m0s"}}
	if _, err := queue.Ensure(t.Context(), js, s); err != nil {
		t.Fatal(err)
	}
	if _, err := js.Publish(t.Context(), offboard.Subjects{}.Request("contoso", offboard.Normal), []byte(`{}`)); err != nil {
		t.Fatal(err)
	}
	cons, err := js.Consumer(t.Context(), offboard.StreamRequests, queue.ConsumerName("contoso", offboard.Normal))
	if err != nil {
		t.Fatal(err)
	}
	batch, err := cons.Fetch(1) // fetched as the worker does, not acked: in flight
	if err != nil {
		t.Fatal(err)
	}
	for range batch.Messages() {
	}
	now := time.Now()
	called := now.Add(-time.Minute)
	call := limiter.Call{API: mde.APIOffboard, ID: 1, At: called.UnixNano()}
	publishEvent(t, js, offboard.Subjects{}.Quota("contoso"), limiter.Event{Writer: "w1", Reserved: []limiter.Call{
		{API: mde.APIOffboard, ID: 1, At: called.Add(45 * time.Second).UnixNano()}}})
	publishEvent(t, js, offboard.Subjects{}.Quota("contoso"), limiter.Event{Writer: "w1", Done: []limiter.Call{call}})
	c := &cli{js: js, timeout: 5 * time.Second, subjects: s.Subjects}
	for _, tenant := range []string{"contoso", ""} {
		sts, err := c.status(t.Context(), tenant, now)
		if err != nil {
			t.Fatal(err)
		}
		st := sts[0]
		if st.InFlight != 1 || st.Quota[0].Left != 0 {
			t.Fatalf("status %q: %d in flight, %d calls left; want 1 and 0", tenant, st.InFlight, st.Quota[0].Left)
		}
		if st.ETA == nil || *st.ETA < (58*time.Minute).Seconds() {
			t.Errorf("status %q: ETA %s of a request in flight whose call waits 59 minutes for the hour's window; want 59m",
				tenant, etaCell(st))
		}
	}
}
