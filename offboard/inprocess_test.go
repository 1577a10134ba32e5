package offboard_test

import (
	"fmt"
	"strings"
	"testing"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/contoso-secops/mde-offboard/internal/queue"
	"github.com/contoso-secops/mde-offboard/internal/queue/natstest"
	"github.com/contoso-secops/mde-offboard/offboard"
)

// TestPublishOfARequestInProcess: on three clustered servers, a request
// is published again at once (after an answer lost, or by another
// publisher) while the request stream's leader still stores its first
// copy: the leader answers "duplicate message id is in process". Publish
// publishes it again until the stream drops it as the repeat: no error,
// Duplicate, the request stored once. Before, Publish returned the
// answer, an API error the doc calls the stream's refusal, though the
// request was stored (10 of 10).
func TestPublishOfARequestInProcess(t *testing.T) {
	t.Parallel()
	c := natstest.Start(t, 3)
	_, js := c.Connect(t)
	if _, err := queue.Ensure(t.Context(), js, queue.Settings{Tenants: []string{"contoso"}, Replicas: 3}); err != nil {
		t.Fatal(err)
	}
	leader := c.StreamLeader(t.Context(), js, offboard.StreamRequests)
	_, ljs := natstest.ConnectTo(t, strings.Split(c.URLs(), ",")[leader])
	const requests = 10
	for i := range requests {
		r := offboard.Request{RequestID: fmt.Sprintf("chg-%d", i), MachineID: machine}
		// The first copy goes first, on the same connection to the
		// stream's leader: the leader is still storing it on its
		// replicas as Publish's comes.
		m := nats.NewMsg(offboard.Subjects{}.Request("contoso", offboard.Normal))
		m.Data = fmt.Appendf(nil, `{"requestId":%q,"machineId":%q}`, r.RequestID, r.MachineID)
		m.Header.Set(jetstream.MsgIDHeader, offboard.RequestMsgID("contoso", r.RequestID, r.Attempt))
		if err := ljs.Conn().PublishMsg(m); err != nil {
			t.Fatal(err)
		}
		ack, err := offboard.Publish(t.Context(), ljs, offboard.Subjects{}, "contoso", offboard.Normal, r)
		if err != nil || !ack.Duplicate {
			t.Errorf("%s: ack %+v, error %v; want the repeat dropped", r.RequestID, ack, err)
		}
	}
	s, err := js.Stream(t.Context(), offboard.StreamRequests)
	if err != nil {
		t.Fatal(err)
	}
	if info, err := s.Info(t.Context()); err != nil || info.State.Msgs != requests {
		t.Errorf("requests stored: %+v, %v; want each once", info.State, err)
	}
}
