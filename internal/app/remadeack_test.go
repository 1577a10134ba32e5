package app

import (
	"testing"
	"time"

	"github.com/contoso-secops/mde-offboard/internal/queue"
	"github.com/contoso-secops/mde-offboard/internal/queue/natstest"
	"github.com/contoso-secops/mde-offboard/offboard"
)

// TestAnswerAfterTheRequestStreamWasMadeAgainDeletesNoNewRequest: the
// request stream is deleted and made again (an operator applying
// deploy/nats, a lone server back without its store and another replica
// starting) while a call is under way, its tenant's consumers not yet
// made again (--no-setup). The call ends: its result is stored and its
// ack meets no consumer. The request it answered went with the old
// stream; the request the new stream holds at the same place, published
// meanwhile, is not deleted in its stead, and is answered once the
// consumers are made. Before, it was deleted unanswered.
func TestAnswerAfterTheRequestStreamWasMadeAgainDeletesNoNewRequest(t *testing.T) {
	t.Parallel()
	c := natstest.Start(t, 1)
	_, js := c.Connect(t)
	s := queue.Settings{Tenants: []string{"contoso"}, AckWait: 10 * time.Second}
	if _, err := queue.Ensure(t.Context(), js, s); err != nil {
		t.Fatal(err)
	}
	e := setup(t, envConfig{tenants: []string{"contoso"}, machines: 2, noStart: true})
	e.opts.NATSURL, e.opts.NoSetup = c.URLs(), true
	e.start()
	tt := e.tenants["contoso"]
	release := e.sim.HoldAnswers(tt.tenantID, tt.machines[0].ID)
	defer release()
	res := e.collect("mde.offboard.result.>")
	e.offboardEach("contoso", "r", 0, 1)
	eventually(t, 20*time.Second, "the call under way", func() bool { return e.apiCalls("offboard") == 1 })

	if err := js.DeleteStream(t.Context(), offboard.StreamRequests); err != nil {
		t.Fatal(err)
	}
	if _, err := js.CreateStream(t.Context(), s.Streams()[0]); err != nil {
		t.Fatal(err)
	}
	e.offboardEach("contoso", "r", 1, 2) // the new stream's first request
	release()
	res.wait(t, 1, 20*time.Second)
	time.Sleep(time.Second) // the ack and the delete of r0
	if n := e.streamMsgs(offboard.StreamRequests); n != 1 {
		t.Errorf("the new stream holds %d requests after r0 was answered, want 1 (r1)", n)
	}
	if _, err := queue.Ensure(t.Context(), js, s); err != nil {
		t.Fatal(err)
	}
	got := res.wait(t, 2, 20*time.Second)
	if n := len(got["contoso/r1"]); n != 1 {
		t.Errorf("r1: %d results, want 1", n)
	}
}
