package bench

import (
	"fmt"
	"strings"
	"testing"
	"time"
)

// BenchmarkIsolation: tenant A has 3000 bulk requests waiting and has just
// filled its shortest window; then 20 normal requests for A and 20 for B are
// published. It reports the publish-to-result latency of each group: A's
// normal requests should wait for A's window only, not behind A's bulk
// backlog, and B should not notice A at all.
func BenchmarkIsolation(b *testing.B) {
	const bulk, normal = 3000, 20
	factor := timeScale(b)
	windows := scaled(documented(), factor)
	h := newHarness(b, options{
		tenants: []string{"a", "b"}, machines: bulk + normal, windows: windows,
		latency: time.Duration(float64(120*time.Millisecond) / factor),
	})
	h.startWorker(scaledArgs(b, factor, "quota-margin", "call-timeout")...)
	h.waitSetup(time.Minute)
	col := h.collect()
	a, bt := h.tenants[0], h.tenants[1]

	var backlog []request
	for i := range bulk {
		backlog = append(backlog, request{tenant: a, id: fmt.Sprintf("bulk-%05d", i), device: i, bulk: true})
	}
	if _, err := h.publishAsync(backlog); err != nil {
		b.Fatal(err)
	}
	// Wait until A has filled its shortest window for the third time: the
	// normal requests then meet a full window, the worst moment.
	busy := windows[0].Count * 3
	deadline := time.Now().Add(time.Minute)
	for h.calls.of(a.id) < busy {
		if time.Now().After(deadline) {
			b.Fatalf("tenant a made %d calls in a minute, want %d before publishing the normal requests", h.calls.of(a.id), busy)
		}
		if err := h.exitedEarly(); err != nil {
			b.Fatal(err)
		}
		time.Sleep(5 * time.Millisecond)
	}
	bulkDoneBefore := h.calls.of(a.id)

	type sent struct {
		key string
		at  time.Time
		a   bool
	}
	var pubs []sent
	for i := range normal {
		for _, t := range []*tenant{a, bt} {
			r := request{tenant: t, id: fmt.Sprintf("normal-%05d", i), device: bulk + i}
			at := time.Now()
			if _, err := h.js.PublishMsg(b.Context(), h.requestMsg(r)); err != nil {
				b.Fatal(err)
			}
			pubs = append(pubs, sent{key: t.name + "/" + r.id, at: at, a: t == a})
		}
	}
	var latA, latB []time.Duration
	var lastA time.Time
	deadline = time.Now().Add(2 * time.Minute)
	for _, p := range pubs {
		for {
			r, ok := col.get(p.key)
			if ok {
				if p.a {
					latA = append(latA, r.first.Sub(p.at))
					if r.first.After(lastA) {
						lastA = r.first
					}
				} else {
					latB = append(latB, r.first.Sub(p.at))
				}
				break
			}
			if time.Now().After(deadline) {
				b.Fatalf("no result for %s after 2m", p.key)
			}
			if err := h.exitedEarly(); err != nil {
				b.Fatal(err)
			}
			time.Sleep(2 * time.Millisecond)
		}
	}
	// How many bulk requests of A started in the meantime: with normal
	// first, only those already pulled (at most maxInFlight) or started
	// once the normal ones were all taken.
	normalDevice := map[string]bool{}
	for i := range normal {
		normalDevice[machineID(a.index, bulk+i)] = true
	}
	bulkDuring := 0
	for _, c := range h.sim.Calls() {
		if c.API == "offboard" && strings.EqualFold(c.TenantID, a.id) && !c.Throttled &&
			c.At.After(pubs[0].at) && !c.At.After(lastA) && !normalDevice[strings.ToLower(c.MachineID)] {
			bulkDuring++
		}
	}
	throttled := h.sim.ThrottledCount(a.id, "offboard") + h.sim.ThrottledCount(bt.id, "offboard")
	logs, panics := h.logSummary()
	b.Logf("A normal: p50 %v, max %v; B normal: p50 %v, max %v (%d each, latency publish→result)",
		percentile(latA, 0.5).Round(time.Microsecond), percentile(latA, 1).Round(time.Microsecond),
		percentile(latB, 0.5).Round(time.Microsecond), percentile(latB, 1).Round(time.Microsecond), normal)
	b.Logf("A had made %d of its %d bulk calls when the normal requests were published; %d bulk calls of A were made "+
		"between the first normal publish and A's last normal result; windows %s; 429s %d; worker warnings: %s; panics in the logs: %d",
		bulkDoneBefore, bulk, bulkDuring, windowsString(windows), throttled, logs, panics)
	b.ReportMetric(ms(percentile(latA, 0.5)), "A-p50-ms")
	b.ReportMetric(ms(percentile(latA, 1)), "A-max-ms")
	b.ReportMetric(ms(percentile(latB, 0.5)), "B-p50-ms")
	b.ReportMetric(ms(percentile(latB, 1)), "B-max-ms")
	b.ReportMetric(float64(bulkDuring), "A-bulk-calls-meanwhile")
}
