package main

import (
	"strings"
	"testing"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/contoso-secops/mde-offboard/internal/queue"
	"github.com/contoso-secops/mde-offboard/internal/queue/natstest"
	"github.com/contoso-secops/mde-offboard/offboard"
)

// TestDeadRetryOfARetryInProcess: on three clustered servers, dead retry
// publishes a retry whose copy, under the same message id, another dead
// retry (of a second operator) published a moment before, not stored yet:
// the stream's leader answers "duplicate message id is in process" until
// its replicas have it. The retry is published again and dropped as the
// repeat: "retried before", exit 0. Before, the dead letter was counted
// not retried, exit 1, though its retry was published.
func TestDeadRetryOfARetryInProcess(t *testing.T) {
	c := natstest.Start(t, 3)
	_, js := c.Connect(t)
	if _, err := queue.Ensure(t.Context(), js, queue.Settings{Tenants: []string{tenant}, Replicas: 3}); err != nil {
		t.Fatal(err)
	}
	publishDead(t, js, offboard.CodeAPIError, `{"requestId":"ip-1","machineId":"`+strings.Repeat("a", 40)+`"}`)
	leader := c.StreamLeader(t.Context(), js, offboard.StreamRequests)
	// The other operator's copy goes first, on the same connection to the
	// stream's leader: the leader reads it first, and is still storing it
	// on its replicas as the command's own comes.
	retryPublishing = func(js jetstream.JetStream, m *nats.Msg) {
		if err := js.Conn().PublishMsg(&nats.Msg{Subject: m.Subject, Header: m.Header, Data: m.Data}); err != nil {
			t.Error(err)
		}
	}
	t.Cleanup(func() { retryPublishing = func(jetstream.JetStream, *nats.Msg) {} })
	code, out, errs := ctl(t, serverURL(c, leader), "dead", "retry", tenant, "--all")
	if code != exitOK || !strings.Contains(out, "0 retried, 1 retried before (the stream dropped the repeat), 0 not retried") {
		t.Errorf("dead retry: exit %d, stdout %q, stderr %q", code, out, errs)
	}
	s, err := js.Stream(t.Context(), offboard.StreamRequests)
	if err != nil {
		t.Fatal(err)
	}
	if info, err := s.Info(t.Context()); err != nil || info.State.Msgs != 1 {
		t.Errorf("requests stored: %+v, %v; want the retry once", info.State, err)
	}
}
