package app

import (
	"context"
	"testing"
	"time"

	"github.com/contoso-secops/mde-offboard/internal/queue/natstest"
)

// TestSilentNATSConnectionIsNoticed: a connection that goes silent
// without being closed (a partition, a cluster node lost without a word)
// is noticed within a few pings: mde_offboard_nats_connected goes 0 and
// /readyz stops answering ready, so the worker looks for another server
// and the alert fires. With the client library's default ping, every two
// minutes with two unanswered allowed, that took four minutes or more.
func TestSilentNATSConnectionIsNoticed(t *testing.T) {
	t.Parallel()
	e := setup(t, envConfig{tenants: []string{"contoso"}, noStart: true})
	server := natstest.Start(t, 1)
	hole := natstest.NewSilencer(t, server.URLs()[len("nats://"):])
	o := e.opts
	o.NATSURL = hole.URL()
	o.PingInterval = 100 * time.Millisecond
	a, changes := startWatchingConn(t, o)
	t.Cleanup(func() {
		hole.Resume() // a server again, for a clean stop
		_ = a.Stop(context.Background())
	})
	hole.Silence()
	// Pings every 100 ms, two unanswered allowed: noticed within about
	// 0.3 s; 10 s leaves room for a busy machine, and none for the
	// library's default.
	timeout := time.After(10 * time.Second)
	for {
		select {
		case up := <-changes:
			if up {
				continue
			}
			if a.Ready(t.Context()) == nil {
				t.Error("ready with the connection silent")
			}
			return
		case <-timeout:
			t.Fatal("a silent NATS connection was not noticed within 10s")
		}
	}
}
