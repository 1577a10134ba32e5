package limiter

import (
	"runtime"
	"testing"
	"time"

	"github.com/jonboulle/clockwork"
)

// BenchmarkBusyHourMemory prints what the limiters of busy tenants hold:
// 1000 tenants, each having made the 1500 calls the documented limits
// allow in an hour (one every 2.4 s). Each then keeps 1500 completion
// times, its most for these limits, for the rest of the hour.
func BenchmarkBusyHourMemory(b *testing.B) {
	const tenants, calls = 1000, 1500
	var perTenant, gcTime float64
	for b.Loop() {
		clock := clockwork.NewFakeClockAt(epoch)
		before := heapAlloc()
		ls := make([]*Limiter, tenants)
		for i := range ls {
			ls[i] = NewTenant(clock).Add("offboard", Default())
		}
		for range calls {
			clock.Advance(time.Hour / calls)
			for _, l := range ls {
				p, _ := l.TryAcquire(clock.Now())
				if p == nil {
					b.Fatal("no permit within the documented limits")
				}
				p.CompleteNow()
			}
		}
		after := heapAlloc()
		for _, l := range ls {
			if got := l.Remaining(clock.Now()); got[1] != 0 {
				b.Fatalf("remaining in the hour %d, want 0: the stamps are not all kept", got[1])
			}
		}
		perTenant = float64(after-before) / tenants
		start := time.Now()
		runtime.GC() // what one collection costs with these limiters live
		gcTime = float64(time.Since(start).Microseconds()) / 1000
		runtime.KeepAlive(ls)
	}
	b.ReportMetric(perTenant/1024, "KiB/busy-tenant")
	b.ReportMetric(perTenant*tenants/(1<<20), "MiB/1000-tenants")
	b.ReportMetric(gcTime, "ms/gc")
}

// heapAlloc is the live heap after a collection.
func heapAlloc() uint64 {
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapAlloc
}
