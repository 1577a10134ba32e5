package app

import (
	"testing"
	"time"

	"github.com/contoso-secops/mde-offboard/internal/queue/natstest"
)

// TestRequestLeftIntoASilentConnectionComesBackAtOnce: the connection
// goes silent (a partition, a server host lost without a word) while a
// request's result is being stored. The store times out, and the request
// is left for redelivery; its nak goes into the silent connection, which
// the client takes for alive until its pings go unanswered. Once NATS is
// back the request is taken up again within seconds, not after its ack
// wait: the nak is sent again until the server answers it. Before, it
// was sent once, lost, and the request waited out its ack wait (a minute
// by default) after NATS was back.
func TestRequestLeftIntoASilentConnectionComesBackAtOnce(t *testing.T) {
	t.Parallel()
	const ackWait = time.Minute
	e := setup(t, envConfig{tenants: []string{"contoso"}, machines: 1, ackWait: ackWait, noStart: true})
	srv := natstest.Start(t, 1)
	hole := natstest.NewSilencer(t, srv.URLs()[len("nats://"):])
	e.opts.NATSURL = hole.URL()
	// Pings too far apart to notice the silence before the store times
	// out (queue.StepTimeout): the nak goes into the silent connection.
	e.opts.PingInterval = time.Minute
	e.start()
	e.nc.Close()
	e.connect(srv.URLs())
	res := e.collect("mde.offboard.result.>")
	tt := e.tenants["contoso"]
	release := e.sim.HoldAnswers(tt.tenantID, tt.machines[0].ID)
	e.offboardEach("contoso", "r-", 0, 1)
	eventually(t, 10*time.Second, "the call under way", func() bool { return e.apiCalls("offboard") == 1 })
	hole.Silence()
	release()
	// The result's store (2 s at most) times out and the request is left
	// meanwhile, its nak into the silence.
	time.Sleep(4 * time.Second)
	hole.Reopen()
	back := time.Now()
	got := res.wait(t, 1, ackWait)
	if took := time.Since(back); took > 20*time.Second {
		t.Errorf("the request's result came %v after NATS was back (ack wait %v)", took.Round(time.Second), ackWait)
	}
	time.Sleep(time.Second) // a second result would come within a poll
	for key, rs := range res.snapshot() {
		if len(rs) != 1 {
			t.Errorf("%s: %d results", key, len(rs))
		}
	}
	if r := got["contoso/r-0"]; len(r) == 0 || r[0].Outcome != "created" {
		t.Errorf("result %+v", r)
	}
	e.oneActionEach("contoso", 1)
}
