package worker

import (
	"strings"
	"testing"
	"time"

	"github.com/jonboulle/clockwork"

	"github.com/contoso-secops/mde-offboard/internal/mde"
	"github.com/contoso-secops/mde-offboard/offboard"
)

// TestGuardInactivityByTheAPIsClock: the worker's host clock runs five
// days ahead (its time synchronisation failed; NATS on the same host
// runs as far ahead, so nothing tells the clock off). Defender saw the
// device an hour ago by its own clock (the API answers with its Date),
// and requireInactiveFor is 72h: the device is refused, as active, and
// no offboard call goes out. Judged by the host's clock alone, the hour
// ago read as five days ago and the device was offboarded.
func TestGuardInactivityByTheAPIsClock(t *testing.T) {
	t.Parallel()
	ahead := clockwork.NewFakeClockAt(time.Now().Add(5 * 24 * time.Hour))
	e := setupLoopOpts(t, `["100/1m"]`, "    guards:\n      requireInactiveFor: 72h\n", RetryPolicy{}, func(o *Options) { o.Clock = ahead })
	for _, req := range []struct {
		id      string
		members map[string]any
	}{
		{"by-id", map[string]any{"machineId": loopMachine}},
		{"by-name", map[string]any{"computerDnsName": "pc-1.contoso.local"}},
		{"dry-by-id", map[string]any{"machineId": loopMachine, "dryRun": true}},
	} {
		e.publishRequest(t, req.id, req.members)
		r := e.nextResult(t, req.id)
		if r.Outcome != offboard.OutcomeFailed || r.Error == nil || r.Error.Rule != offboard.RuleRequireInactiveFor || !strings.Contains(r.Error.Message, "ago") {
			t.Errorf("%s: result %s %+v, want blocked by requireInactiveFor (seen about an hour ago)", req.id, r.Outcome, r.Error)
		}
	}
	n := 0
	for _, c := range e.sim.Calls() {
		if c.API == mde.APIOffboard {
			n++
		}
	}
	if n != 0 {
		t.Errorf("%d offboard calls for a device Defender saw an hour ago, want none", n)
	}
}
