package queue

import (
	"testing"
	"time"

	"github.com/jonboulle/clockwork"
	"go.uber.org/zap"

	"github.com/contoso-secops/mde-offboard/internal/testwait"
)

// TestPresenceStartedAheadCountsAWithdrawalByTheServersClock: a replica
// whose clock runs a minute ahead of the NATS server's (the very case
// that sets it aside) starts just after the only replica serving
// fabrikam withdrew (a restart). The withdrawal is dated by the server:
// fabrikam counts as served until a TTL after it by the server's clock,
// whatever this replica's clock says, and no longer. Before, the
// server's stamp was read on this replica's clock: a minute old, the
// withdrawal was dropped, and fabrikam's waiting requests were answered
// unknown_tenant at once.
func TestPresenceStartedAheadCountsAWithdrawalByTheServersClock(t *testing.T) {
	t.Parallel()
	_, js := connect(t)
	cfg := Settings{}.Presence()
	if _, err := js.CreateOrUpdateKeyValue(t.Context(), cfg); err != nil {
		t.Fatal(err)
	}
	b, err := NewPresence(t.Context(), js, PresenceOptions{ID: "b", Tenants: []string{"fabrikam"}, Bucket: cfg, Clock: clockwork.NewRealClock(), Logger: zap.NewNop()})
	if err != nil {
		t.Fatal(err)
	}
	stopB := runStoppable(b)
	testwait.For(t, b.Current(), presenceStart, "b knows every announcement stored")
	if err := stopB(); err != nil {
		t.Fatal(err)
	}

	clock := clockwork.NewFakeClockAt(time.Now().Add(time.Minute))
	a, err := NewPresence(t.Context(), js, PresenceOptions{ID: "a", Tenants: []string{"contoso"}, Bucket: cfg, Clock: clock, Logger: zap.NewNop()})
	if err != nil {
		t.Fatal(err)
	}
	stopA := runStoppable(a)
	t.Cleanup(func() { _ = stopA() })
	testwait.For(t, a.Current(), presenceStart, "a knows every announcement stored")
	if !a.Known() {
		t.Fatal("a's view not current")
	}
	if !a.Serves("fabrikam") {
		t.Fatal("fabrikam taken for served by nobody by a replica whose clock runs a minute ahead, started just after b withdrew; " +
			"want it counted until a TTL after the withdrawal by the server's clock")
	}
	clock.Advance(PresenceTTL)
	if a.servedBefore("fabrikam") {
		t.Error("fabrikam still taken for served a TTL after b withdrew")
	}
}
