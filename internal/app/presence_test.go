package app

import (
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/contoso-secops/mde-offboard/internal/queue/natstest"
	"github.com/contoso-secops/mde-offboard/offboard"
)

// TestNoUnknownTenantAfterANATSOutage: replica A serves contoso and
// fabrikam, replica B (an older tenants file) contoso only. The lone NATS
// server is away for longer than an announcement counts. When it is back,
// B's unrouted consumer fetches again before B's presence watch is back:
// B's view of A is behind, and fabrikam's requests wait for it rather
// than being answered unknown_tenant (before: a third of them were) while
// A serves fabrikam.
func TestNoUnknownTenantAfterANATSOutage(t *testing.T) {
	t.Parallel()
	c := natstest.Start(t, 1)
	e := setup(t, envConfig{machines: 12, noStart: true})
	e.opts.NATSURL = c.URLs()
	e.opts.PresenceBeat = time.Second // announcements count 3 s
	e.start()                         // A
	e.nc.Close()
	e.connect(c.URLs(), nats.MaxReconnects(-1), nats.ReconnectWait(100*time.Millisecond))
	e.startReplica("contoso") // B
	c.Shutdown(0)
	time.Sleep(8 * time.Second)
	c.Restart(0)
	res := e.collect("mde.offboard.result.>")
	for i := range 12 {
		e.offboardEach("fabrikam", "f-", i, i+1)
		time.Sleep(500 * time.Millisecond)
	}
	res.wait(t, 12, 60*time.Second)
	time.Sleep(500 * time.Millisecond) // a second result, if any
	for key, rs := range res.snapshot() {
		if len(rs) != 1 || rs[0].Outcome != offboard.OutcomeCreated {
			t.Errorf("%s: %d results, first %s %+v", key, len(rs), rs[0].Outcome, rs[0].Error)
		}
	}
}
