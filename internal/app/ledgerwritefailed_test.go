package app

import (
	"testing"
	"time"

	"github.com/contoso-secops/mde-offboard/internal/mde/mdesim"
	"github.com/contoso-secops/mde-offboard/internal/queue"
	"github.com/contoso-secops/mde-offboard/offboard"
)

// TestLedgerGoneAndItsClaimRefused: a request's offboard call acts, its
// answer is lost (504), and the device's actions cannot be listed to find
// the action: the request goes back to the stream with its "calling"
// entry. The ledger bucket is then deleted and made again a moment later
// (an operator's repair): the next deliveries find no entry, and their
// claims fail while the bucket is away. Each such delivery was noted as
// one that left the request with no call sent, and the delivery after it
// took the request for a new one, skipping the look for the first
// delivery's action: a second call, and, the first action finished by
// then, a second action. A delivery noted so is only one that is known
// to follow no call itself.
func TestLedgerGoneAndItsClaimRefused(t *testing.T) {
	t.Parallel()
	e := setup(t, envConfig{tenants: []string{"contoso"}, machines: 1, sim: mdesim.Options{ActionCompleteAfter: time.Second}})
	results := e.collect("mde.offboard.result.>")
	ctx := t.Context()
	m := e.leftAfterALostAnswer("mde.offboard.request.contoso", "refused-1", nil, 6)
	if err := e.js.DeleteKeyValue(ctx, offboard.BucketLedger); err != nil {
		t.Fatal(err)
	}
	cons, err := e.js.Consumer(ctx, offboard.StreamRequests, queue.ConsumerName("contoso", offboard.Normal))
	if err != nil {
		t.Fatal(err)
	}
	eventually(t, 30*time.Second, "deliveries whose claim failed", func() bool {
		info, err := cons.Info(ctx)
		return err == nil && info.Delivered.Consumer >= 3
	})
	if _, err := e.js.CreateKeyValue(ctx, queue.Settings{}.Ledger()); err != nil {
		t.Fatal(err)
	}
	results.wait(t, 1, 30*time.Second)
	rs := results.snapshot()["contoso/refused-1"]
	t.Logf("%d offboard calls, %d actions for the device", e.offboardCalls(e.tenants["contoso"].tenantID, m.ID), len(e.sim.Actions(e.tenants["contoso"].tenantID)))
	e.createdWithTheAction(rs, m)
}
