package app

import (
	"context"
	"testing"
	"time"

	"github.com/jonboulle/clockwork"
	"github.com/prometheus/client_golang/prometheus"
)

// aheadClock is the real clock set ahead by a fixed amount: a host whose
// time synchronisation failed.
type aheadClock struct {
	clockwork.Clock
	by time.Duration
}

func (c aheadClock) Now() time.Time                  { return c.Clock.Now().Add(c.by) }
func (c aheadClock) Since(t time.Time) time.Duration { return c.Now().Sub(t) }
func (c aheadClock) Until(t time.Time) time.Duration { return t.Sub(c.Now()) }

// TestReplicaWithItsClockOffLeavesItsTenants: replica B's clock is 5 s
// ahead, far beyond half the quota margin, so B makes no call. Its share
// of the tenants goes to A, which serves them too: every request is
// answered, one result and one action each. Before, B kept its share and
// their requests waited for as long as its clock was off (12 of 18
// unanswered after 30 s, answered only once B stopped).
func TestReplicaWithItsClockOffLeavesItsTenants(t *testing.T) {
	t.Parallel()
	names := numberedTenants(6)
	e := setup(t, envConfig{tenants: names, machines: 3, noStart: true})
	e.opts.PresenceBeat = time.Second
	e.opts.ReplicaID = "replica-a" // B ranks first for t04 and t05
	e.start()
	o := e.opts
	o.NATSURL = e.app.NATSURL()
	o.ReplicaID = "replica-b"
	o.Registry = prometheus.NewRegistry()
	o.Clock = aheadClock{clockwork.NewRealClock(), 5 * time.Second}
	b, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = b.Stop(context.Background()) })
	res := e.collect("mde.offboard.result.>")
	for _, n := range names {
		e.offboardEach(n, n+"-", 0, 3)
	}
	res.wait(t, 18, 20*time.Second)
	time.Sleep(time.Second) // a second answer would come within a poll or two
	res.wantOneCreatedEach(t)
	for _, n := range names {
		e.oneActionEach(n, 3)
	}
	if got := assignedTenants(t, o.Registry); len(got) != 0 {
		t.Errorf("B, its clock off, says it takes the requests of %v", got)
	}
}
