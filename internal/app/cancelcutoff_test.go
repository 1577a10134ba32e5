package app

import (
	"context"
	"net/http"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/contoso-secops/mde-offboard/internal/campaign"
	"github.com/contoso-secops/mde-offboard/internal/queue/natstest"
	"github.com/contoso-secops/mde-offboard/offboard"
)

// TestCancelWrittenWhileAReplicaWasCutOff: a campaign cancelled while a
// replica is cut off from NATS is cancelled there as soon as it is back:
// the campaign's request that waited out a 429 there, and whose retry
// fell due during the cut, is answered cancelled, not sent before the
// replica has read the campaign marks anew. Before, the retry went out
// the moment the connection came back, with the marks read before the
// cut.
func TestCancelWrittenWhileAReplicaWasCutOff(t *testing.T) {
	t.Parallel()
	e := setup(t, envConfig{tenants: []string{"contoso"}, machines: 1, noStart: true, ackWait: time.Minute})
	server := natstest.Start(t, 1)
	link := newCutter(t, server.URLs()[len("nats://"):])
	o := e.opts
	o.NATSURL = link.url()
	o.StatsEvery = 100 * time.Millisecond
	a, changes := startWatchingConn(t, o)
	t.Cleanup(func() { _ = a.Stop(context.Background()) })
	e.connect(server.URLs(), nats.MaxReconnects(-1))
	res := e.collect("mde.offboard.result.>")

	tt := e.tenants["contoso"]
	const retryAfter = 7 * time.Second
	e.sim.InjectStatus(tt.tenantID, "offboard", http.StatusTooManyRequests, "", "", 1, retryAfter)
	id := campaign.RequestID("wave1", 1)
	e.publish("mde.offboard.request.contoso.bulk", map[string]any{"requestId": id, "machineId": tt.machines[0].ID, "source": campaign.Source("wave1")}, "contoso:"+id)
	eventually(t, 10*time.Second, "the 429", func() bool { return len(e.offboardCallsSince("contoso", time.Time{})) == 1 })
	throttled := time.Now()
	link.cut()
	waitConn(t, changes, false)
	kv, err := campaign.ControlBucket(t.Context(), e.js)
	if err != nil {
		t.Fatal(err)
	}
	cancelled := time.Now()
	if err := campaign.SetMark(t.Context(), kv, "contoso", "wave1", campaign.Mark{Cancelled: true, By: "op", At: cancelled}); err != nil {
		t.Fatal(err)
	}
	// Back once the retry is due: it waits for its quota journal entry.
	time.Sleep(time.Until(throttled.Add(retryAfter + time.Second)))
	link.join()
	waitConn(t, changes, true)
	got := res.wait(t, 1, 20*time.Second)
	if calls := e.offboardCallsSince("contoso", cancelled); len(calls) > 0 {
		t.Errorf("%d contoso calls after the cancel, the first %v after it was written", len(calls), calls[0].Sub(cancelled))
	}
	for _, rs := range got {
		if r := rs[len(rs)-1]; r.Outcome != offboard.OutcomeFailed || r.Error == nil || r.Error.Code != offboard.CodeCancelled {
			t.Errorf("%s: %s %+v, want failed, cancelled", r.RequestID, r.Outcome, r.Error)
		}
	}
}
