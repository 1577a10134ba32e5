package app

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/contoso-secops/mde-offboard/internal/mde/mdesim"
	"github.com/contoso-secops/mde-offboard/offboard"
)

// TestRefusedCallWhoseFinalEntryIsLost: a call the API refuses (400) gets
// a failed result, whose ledger entry the ledger does not store (its
// stream's leader gone a moment; here, a size limit set on the bucket's
// stream at the refusal and lifted at the next look). The request comes
// back to its "calling" entry, and its call goes out again, which the API
// accepts this time. Its one result says so: created, with no dead letter.
// Before, the failed result and its dead letter went out beside the
// entry, and the created one after them was dropped as their repeat: the
// audit trail said the device was refused, while it had been offboarded.
func TestRefusedCallWhoseFinalEntryIsLost(t *testing.T) {
	t.Parallel()
	var (
		mu     sync.Mutex
		js     jetstream.JetStream
		capped bool
	)
	capLedger := func(size int32) {
		mu.Lock()
		defer mu.Unlock()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		s, err := js.Stream(ctx, "KV_"+offboard.BucketLedger)
		if err != nil {
			t.Error(err)
			return
		}
		cfg := s.CachedInfo().Config
		cfg.MaxMsgSize = size
		if _, err := js.UpdateStream(ctx, cfg); err != nil {
			t.Error(err)
			return
		}
		capped = size > 0
	}
	onCall := func(c mdesim.Call) {
		mu.Lock()
		wasCapped := capped
		mu.Unlock()
		switch {
		case c.API == mdesim.APIOffboard && c.Status == 400:
			// The "calling" entry fits; an entry with its result does not.
			capLedger(300)
		case c.API == mdesim.APIMachineActions && wasCapped:
			capLedger(-1)
		}
	}
	e := setup(t, envConfig{tenants: []string{"contoso"}, machines: 1, sim: mdesim.Options{OnCall: onCall}})
	mu.Lock()
	js = e.js
	mu.Unlock()
	tt := e.tenants["contoso"]
	e.sim.InjectStatus(tt.tenantID, mdesim.APIOffboard, 400, "BadRequest", "Refused once", 1, 0)

	c := e.collect("mde.offboard.result.contoso")
	e.publish("mde.offboard.request.contoso", map[string]any{"requestId": "r1", "machineId": tt.machines[0].ID}, "contoso:r1")
	eventually(t, 30*time.Second, "request stream empty", func() bool { return e.streamMsgs(offboard.StreamRequests) == 0 })
	rs := c.wait(t, 1, 5*time.Second)["contoso/r1"]
	actions := len(e.sim.Actions(tt.tenantID))
	if len(rs) != 1 || rs[0].Outcome != offboard.OutcomeCreated || actions != 1 {
		var outcomes []string
		for _, r := range rs {
			outcomes = append(outcomes, r.Outcome)
		}
		t.Errorf("results of r1: %v, actions of the device: %d; want one created result for its one action", outcomes, actions)
	}
	if n := e.streamMsgs(offboard.StreamDead); n != 0 {
		t.Errorf("%d dead letters for a request whose device was offboarded", n)
	}
}
