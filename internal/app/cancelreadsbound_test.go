package app

import (
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/contoso-secops/mde-offboard/internal/campaign"
	"github.com/contoso-secops/mde-offboard/internal/control"
	"github.com/contoso-secops/mde-offboard/offboard"
)

// TestCancelReadsOfManyTenantsAtOnceAreBounded: ten tenants, each paused
// with a campaign's 150 rows behind 200 other requests of its bulk lane,
// have those campaigns cancelled at once. Each cancel's pass has its
// lane read past the 200, through a consumer of the request stream made
// for the read; the worker reads for a few tenants at a time
// (worker.behindReadsAtOnce, 4), not for every tenant at once: at a
// thousand tenants, a thousand such consumers took the request stream's
// whole room for consumers beside the tenants' own (max_consumers, 2N +
// 1001) and answered eight thousand requests at once, past the worker's
// bound on the requests it works on. Every row is answered cancelled,
// once.
func TestCancelReadsOfManyTenantsAtOnceAreBounded(t *testing.T) {
	t.Parallel()
	const tenants, others, rows, atOnce = 10, 200, 150, 4
	names := make([]string, tenants)
	for i := range names {
		names[i] = fmt.Sprintf("t%02d", i)
	}
	e := setup(t, envConfig{tenants: names, machines: 1})
	res := e.collect("mde.offboard.result.>")
	for _, n := range names {
		e.control(control.ActionPause, n, control.PriorityAll)
	}
	time.Sleep(time.Second) // the contract's time for a control to take effect
	for _, n := range names {
		m := e.tenants[n].machines[0]
		for i := range others + rows {
			id, src := campaign.RequestID("keep", i+1), campaign.Source("keep")
			if i >= others {
				id, src = campaign.RequestID("wave", i+1-others), campaign.Source("wave")
			}
			data := fmt.Appendf(nil, `{"requestId":%q,"machineId":%q,"source":%q}`, id, m.ID, src)
			msg := nats.NewMsg("mde.offboard.request." + n + ".bulk")
			msg.Data = data
			msg.Header.Set("Nats-Msg-Id", n+":"+id)
			if _, err := e.js.PublishMsgAsync(msg); err != nil {
				t.Fatal(err)
			}
		}
	}
	select {
	case <-e.js.PublishAsyncComplete():
	case <-time.After(30 * time.Second):
		t.Fatal("requests not stored within 30 s")
	}
	requests, err := e.js.Stream(t.Context(), offboard.StreamRequests)
	if err != nil {
		t.Fatal(err)
	}
	// consumers fails the test with t.Error, not t.Fatal: the watch
	// below calls it from a goroutine of its own.
	consumers := func() (int, bool) {
		info, err := requests.Info(t.Context())
		if err != nil {
			t.Error(err)
			return 0, false
		}
		return info.State.Consumers, true
	}
	base, ok := consumers()
	if !ok {
		t.FailNow()
	}
	var most atomic.Int64
	done := make(chan struct{})
	watched := make(chan struct{})
	go func() {
		defer close(watched)
		for {
			select {
			case <-done:
				return
			case <-time.After(2 * time.Millisecond):
			}
			n, ok := consumers()
			if !ok {
				return
			}
			if n := int64(n - base); n > most.Load() {
				most.Store(n)
			}
		}
	}()
	kv, err := campaign.ControlBucket(t.Context(), e.js)
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range names {
		if err := campaign.SetMark(t.Context(), kv, n, "wave", campaign.Mark{Cancelled: true, By: "op", At: time.Now()}); err != nil {
			t.Fatal(err)
		}
	}
	got := res.wait(t, tenants*rows, 60*time.Second)
	close(done)
	<-watched
	for key, rs := range got {
		if r := rs[len(rs)-1]; len(rs) != 1 || r.Error == nil || r.Error.Code != offboard.CodeCancelled {
			t.Errorf("%s: %d results, the last %s %+v; want one, cancelled", key, len(rs), r.Outcome, r.Error)
		}
	}
	t.Logf("at most %d reads' consumers at once", most.Load())
	if n := most.Load(); n > atOnce {
		t.Errorf("%d consumers of cancel reads at once, want %d at most", n, atOnce)
	}
}
