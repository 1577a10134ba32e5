package app

import (
	"context"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/contoso-secops/mde-offboard/internal/queue"
	"github.com/contoso-secops/mde-offboard/internal/queue/natstest"
)

// TestRequestPublishedWhileAReplicaWasCutOff: a request published while
// an idle replica is cut off from NATS (the server storing it for the
// others) is not heard of by that replica's wake-up subscription. Once
// the replica is back, its tenants' consumers are looked at again at
// once, and the request is served within seconds; before, it waited for
// the idle tenant's safety poll, up to queue.IdlePoll (30 s).
func TestRequestPublishedWhileAReplicaWasCutOff(t *testing.T) {
	t.Parallel()
	e := setup(t, envConfig{tenants: []string{"contoso"}, machines: 1, noStart: true})
	server := natstest.Start(t, 1)
	link := newCutter(t, server.URLs()[len("nats://"):])
	o := e.opts
	o.NATSURL = link.url()
	a, changes := startWatchingConn(t, o)
	t.Cleanup(func() { _ = a.Stop(context.Background()) })
	e.connect(server.URLs(), nats.MaxReconnects(-1))
	res := e.collect("mde.offboard.result.>")

	// Idle long enough that its source polls only every IdlePoll.
	e.offboardEach("contoso", "first", 0, 1)
	res.wait(t, 1, 20*time.Second)
	time.Sleep(3 * o.Poll)
	link.cut()
	waitConn(t, changes, false)
	e.offboardEach("contoso", "during", 0, 1)
	link.join()
	waitConn(t, changes, true)
	back := time.Now()
	res.wait(t, 2, queue.IdlePoll-5*time.Second)
	if took := time.Since(back); took > 10*time.Second {
		t.Errorf("the request published during the cut was served %v after the replica was back", took)
	}
}
