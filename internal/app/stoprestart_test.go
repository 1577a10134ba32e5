package app

import (
	"context"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/contoso-secops/mde-offboard/internal/mde/mdesim"
	"github.com/contoso-secops/mde-offboard/internal/queue/natstest"
	"github.com/contoso-secops/mde-offboard/offboard"
)

// TestStopWhileALoneServerRestarts: a lone NATS server restarted while
// the worker stops comes back without the tenants' consumers (they are
// in memory), and the stop no longer makes them again. The requests
// under way then store their results, and their acks find no one to
// answer them: they are done with at once and the requests deleted from
// the stream. Before, each ack was sent again for 30 s to a consumer
// gone, holding the stop, and the delete after it failed, leaving the
// answered requests in the stream.
func TestStopWhileALoneServerRestarts(t *testing.T) {
	t.Parallel()
	c := natstest.Start(t, 1)
	e := setup(t, envConfig{
		sim:      mdesim.Options{Latency: time.Second},
		tenants:  []string{"contoso"},
		machines: 2, noStart: true,
	})
	e.opts.NATSURL = c.URLs()
	e.opts.ShutdownTimeout = 30 * time.Second
	e.start()
	e.nc.Close()
	e.connect(c.URLs(), nats.MaxReconnects(-1), nats.ReconnectWait(100*time.Millisecond))
	res := e.collect("mde.offboard.result.>")
	for i, m := range e.tenants["contoso"].machines {
		id := []string{"restart-a", "restart-b"}[i]
		e.publish("mde.offboard.request.contoso", map[string]any{"requestId": id, "machineId": m.ID}, "contoso:"+id)
	}
	eventually(t, 10*time.Second, "calls under way", func() bool { return len(e.sim.Calls()) > 0 })

	began := time.Now()
	stopped := make(chan error, 1)
	go func() { stopped <- e.app.Stop(context.Background()) }()
	c.Shutdown(0)
	time.Sleep(300 * time.Millisecond)
	c.Restart(0)
	var err error
	select {
	case err = <-stopped:
	case <-time.After(60 * time.Second):
		t.Fatal("the stop had not returned after 60 s")
	}
	took := time.Since(began)
	t.Logf("stop took %v: %v", took.Round(100*time.Millisecond), err)
	if err != nil {
		t.Errorf("stop: %v", err)
	}
	if took > 10*time.Second {
		t.Errorf("the stop took %v; its requests' work took a few seconds", took.Round(100*time.Millisecond))
	}
	got := res.wait(t, 2, 10*time.Second)
	for _, id := range []string{"restart-a", "restart-b"} {
		if r := got["contoso/"+id]; len(r) != 1 || r[0].Outcome != offboard.OutcomeCreated {
			t.Errorf("%s: results %+v, want one, created", id, r)
		}
	}
	if n := e.streamMsgs(offboard.StreamRequests); n != 0 {
		t.Errorf("%d answered requests left in %s after the stop", n, offboard.StreamRequests)
	}
}
