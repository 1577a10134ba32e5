package queue

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/contoso-secops/mde-offboard/offboard"
)

// TestSustainedDropsLookAtMostOncePerInterval: a router that stays just
// behind its publishers (a slow consumer that lasts) has wake-ups dropped
// again and again. Each drop has every source look at both its lanes,
// and an empty look after a wake-up waits wakeWait for a request: looked
// for at every drop, the idle tenants pulled without a pause for as long
// as the drops lasted, thousands of pulls a second from a hundred
// tenants, which is load on the server the router fell behind on. Drops
// have every source look at most once per lookoutEvery.
func TestSustainedDropsLookAtMostOncePerInterval(t *testing.T) {
	t.Parallel()
	const tenants = 50
	names := make([]string, tenants)
	for i := range names {
		names[i] = fmt.Sprintf("t%03d", i)
	}
	nc, js, r, subj := routed(t, names...)
	ctx, cancel := context.WithCancel(t.Context())
	var wg sync.WaitGroup
	defer wg.Wait()
	defer cancel()
	for _, name := range names {
		src, err := r.Source(ctx, js, name, IdlePoll)
		if err != nil {
			t.Fatal(err)
		}
		wg.Go(func() {
			for ctx.Err() == nil {
				_, _ = src.NextBatch(ctx, 1, offboard.Normal, offboard.Bulk)
			}
		})
	}
	var pulls atomic.Int64
	count, err := nc.Subscribe("$JS.API.CONSUMER.MSG.NEXT.>", func(*nats.Msg) { pulls.Add(1) })
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = count.Unsubscribe() }()
	if err := r.sub.SetPendingLimits(1, -1); err != nil {
		t.Fatal(err)
	}
	pub, err := nats.Connect(nc.ConnectedUrl())
	if err != nil {
		t.Fatal(err)
	}
	defer pub.Close()
	time.Sleep(200 * time.Millisecond) // the first pulls and counts are done
	pulls.Store(0)
	// Drops for a second: the handler is held up while three requests
	// of a tenant with no source come, two of which are dropped.
	const window = 2 * time.Second
	drops := 0
	start := time.Now()
	for time.Since(start) < window {
		before, _ := r.sub.Dropped()
		r.mu.Lock()
		for range 3 {
			if err := pub.Publish(subj.Request("ghost", offboard.Normal), []byte("x")); err != nil {
				r.mu.Unlock()
				t.Fatal(err)
			}
		}
		_ = pub.Flush()
		for until := time.Now().Add(time.Second); time.Now().Before(until); time.Sleep(100 * time.Microsecond) {
			if n, _ := r.sub.Dropped(); n > before {
				break
			}
		}
		r.mu.Unlock()
		drops++
		time.Sleep(5 * time.Millisecond)
	}
	n := pulls.Load()
	// One look in the window (lookoutEvery is longer), a pull and a
	// waiting pull of each lane.
	most := int64(tenants * 2 * 2)
	t.Logf("%d drop rounds in %v: %d pulls from %d tenants (%.0f a second)", drops, window, n, tenants, float64(n)/window.Seconds())
	if n > most {
		t.Errorf("%d pulls in %v of drops from %d idle tenants, want at most %d", n, window, tenants, most)
	}
}
