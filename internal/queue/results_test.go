package queue

import (
	"fmt"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/contoso-secops/mde-offboard/offboard"
)

// TestPublishedResult: the result published under a message id is found
// whether it is the tenant's last result or one among others after it,
// and not when it was stored before the look's start, when it is another
// tenant's, or when there is none; the look leaves no consumer behind.
func TestPublishedResult(t *testing.T) {
	t.Parallel()
	_, js := connect(t)
	ctx := t.Context()
	if _, err := Ensure(ctx, js, Settings{Tenants: []string{"contoso", "fabrikam"}}); err != nil {
		t.Fatal(err)
	}
	s := offboard.Subjects{}
	results, err := js.Stream(ctx, offboard.StreamResults)
	if err != nil {
		t.Fatal(err)
	}
	publish := func(tenant, msgID, data string) time.Time {
		t.Helper()
		ack, err := js.Publish(ctx, s.Result(tenant), []byte(data), jetstream.WithMsgID(msgID))
		if err != nil {
			t.Fatal(err)
		}
		m, err := results.GetMsg(ctx, ack.Sequence)
		if err != nil {
			t.Fatal(err)
		}
		return m.Time
	}
	look := func(tenant, msgID string, since time.Time) string {
		t.Helper()
		data, err := PublishedResult(ctx, js, s.Result(tenant), msgID, since)
		if err != nil {
			t.Fatal(err)
		}
		return string(data)
	}
	start := time.Now().Add(-time.Minute)
	if got := look("contoso", "result:contoso:r1", start); got != "" {
		t.Errorf("no result published: found %q", got)
	}
	since := publish("contoso", "result:contoso:old", "old").Add(time.Nanosecond)
	publish("contoso", "result:contoso:r1", "r1")
	if got := look("contoso", "result:contoso:r1", since); got != "r1" {
		t.Errorf("the tenant's last result: found %q, want r1", got)
	}
	for i := range 600 { // more than one fetch
		publish("contoso", fmt.Sprintf("result:contoso:after-%d", i), "after")
	}
	publish("fabrikam", "result:fabrikam:f1", "f1")
	if got := look("contoso", "result:contoso:r1", since); got != "r1" {
		t.Errorf("a result among others: found %q, want r1", got)
	}
	if got := look("contoso", "result:contoso:old", since); got != "" {
		t.Errorf("a result stored before the look's start: found %q", got)
	}
	if got := look("contoso", "result:fabrikam:f1", start); got != "" {
		t.Errorf("another tenant's result: found %q", got)
	}
	info, err := results.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if info.State.Consumers != 0 {
		t.Errorf("%d consumers left on the results stream", info.State.Consumers)
	}
}
