package queue

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/contoso-secops/mde-offboard/internal/queue/natstest"
	"github.com/contoso-secops/mde-offboard/offboard"
)

// TestReadRefusedOnlyForARefusalOfTheRead: a user without consumer
// create on the request stream has its read refused, which the client
// sees only as a request with no answer: ReadRefused tells the refusal.
// The connection keeps that refusal as its last error until it
// reconnects; a later read cut off by an outage (here its bound, as a
// read sent while the stream has no leader is) is that outage, to be
// made again, not the earlier read's refusal. Before, ReadRefused took
// the refusal still on the connection for the later read's: a worker
// whose user had been granted the API meanwhile gave up a cancel's read
// at its first outage, with a warning naming a permission it had.
func TestReadRefusedOnlyForARefusalOfTheRead(t *testing.T) {
	t.Parallel()
	url := natstest.StartWithUsers(t, &server.User{Username: "admin", Password: "a"}, &server.User{Username: "worker", Password: "w", Permissions: &server.Permissions{
		Publish: &server.SubjectPermission{
			Allow: []string{">"},
			Deny:  []string{"$JS.API.CONSUMER.CREATE." + offboard.StreamRequests + ".>"},
		},
	}})
	_, admin := natstest.ConnectTo(t, strings.Replace(url, "nats://", "nats://admin:a@", 1))
	s := Settings{Tenants: []string{"contoso"}}
	if _, err := Ensure(t.Context(), admin, s); err != nil {
		t.Fatal(err)
	}
	for range 3 {
		if _, err := admin.Publish(t.Context(), s.WithDefaults().Subjects.Request("contoso", offboard.Bulk), []byte("{}")); err != nil {
			t.Fatal(err)
		}
	}
	nc, js := natstest.ConnectTo(t, strings.Replace(url, "nats://", "nats://worker:w@", 1))
	requests, err := js.Stream(t.Context(), offboard.StreamRequests)
	if err != nil {
		t.Fatal(err)
	}
	cons, err := js.Consumer(t.Context(), offboard.StreamRequests, ConsumerName("contoso", offboard.Bulk))
	if err != nil {
		t.Fatal(err)
	}
	none := func(*jetstream.RawStreamMsg) {}

	before := nc.LastError()
	_, err = ReadUndelivered(t.Context(), requests, cons, none)
	refused := ReadRefused(nc, before, err)
	if refused == nil || Outage(refused) || !strings.Contains(refused.Error(), "$JS.API.CONSUMER.CREATE") {
		t.Fatalf("refused read: %v; want a refusal naming $JS.API.CONSUMER.CREATE, not an outage", refused)
	}

	before = nc.LastError()
	ctx, cancel := context.WithDeadline(t.Context(), time.Now())
	defer cancel()
	_, err = ReadUndelivered(ctx, requests, cons, none)
	if !Outage(err) {
		t.Fatalf("read past its bound: %v, want an outage", err)
	}
	if got := ReadRefused(nc, before, err); !Outage(got) || !errors.Is(got, context.DeadlineExceeded) {
		t.Errorf("read cut off by an outage after an earlier read's refusal: %v; want the outage, to be made again", got)
	}
}
