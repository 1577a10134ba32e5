package limiter

import (
	"context"
	"fmt"
	"math/rand/v2"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/jonboulle/clockwork"
)

// goroutinesBack waits until the goroutines are at most want and returns
// their number.
func goroutinesBack(want int, within time.Duration) int {
	deadline := time.Now().Add(within)
	n := runtime.NumGoroutine()
	for n > want && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
		n = runtime.NumGoroutine()
	}
	return n
}

// slowAppends is a journal whose appends take a millisecond: call ends
// come while a writer writes.
type slowAppends struct{ *entryLog }

func (j slowAppends) Append(ctx context.Context, tenant string, ev Event, last uint64) (uint64, error) {
	time.Sleep(time.Millisecond)
	return j.entryLog.Append(ctx, tenant, ev, last)
}

// TestSharedIdleTenantsCostNoGoroutine: a tenant's journal writer runs
// only while it has call ends or a pause to write. A worker has a shared
// quota and a shared budget for each of its tenants: a thousand idle
// tenants had two thousand writers waiting. Not parallel: it counts the
// process's goroutines.
func TestSharedIdleTenantsCostNoGoroutine(t *testing.T) {
	j := &entryLog{memJournal: memJournal{last: map[string]uint64{}}, added: make(chan struct{}, 10000)}
	s := NewShared(SharedOptions{Journal: slowAppends{j}, Clock: clockwork.NewRealClock(), Lease: 10 * time.Second, EndsLinger: time.Millisecond})
	t.Cleanup(func() { s.Close(context.Background()) })
	s.MarkCaughtUp(0)
	before := runtime.NumGoroutine()
	const tenants = 300
	limiters := make([]*Limiter, tenants)
	for i := range limiters {
		limiters[i] = s.Tenant(fmt.Sprintf("t%03d", i)).Add("offboard", []Window{{Count: 100, Length: time.Minute}})
	}
	if n := goroutinesBack(before+5, 5*time.Second); n > before+5 {
		t.Fatalf("%d tenants, idle: %d goroutines more, want none", tenants, n-before)
	}

	// Calls of every tenant end one by one, from many goroutines, some
	// while their tenant's writer writes: each end is written although
	// the writers come and go.
	var wg sync.WaitGroup
	for _, l := range limiters {
		permits := []*Permit{call(t, l), call(t, l), call(t, l)}
		wg.Go(func() {
			for _, p := range permits {
				p.CompleteNow()
				time.Sleep(time.Duration(rand.IntN(3)) * time.Millisecond)
			}
		})
	}
	wg.Wait()
	deadline := time.Now().Add(10 * time.Second)
	for {
		j.mu.Lock()
		ends := 0
		for _, ev := range j.entries {
			ends += len(ev.Done)
		}
		j.mu.Unlock()
		if ends == 3*tenants {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d call ends written after 10s", ends, 3*tenants)
		}
		time.Sleep(5 * time.Millisecond)
	}
	if n := goroutinesBack(before+5, 5*time.Second); n > before+5 {
		t.Errorf("every end written: %d goroutines more than before, want none", n-before)
	}
}
