package bench

import (
	"bufio"
	"fmt"
	"net/http"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"
)

// BenchmarkIdleMemory starts one worker process with 10 idle tenants and
// one with BENCH_IDLE_TENANTS (default 1000), the documented windows,
// nothing to do, and reports each one's resident set and Go heap in use
// after BENCH_IDLE_SETTLE (default 20s), and what one more idle tenant
// costs: the difference over the difference in tenants.
func BenchmarkIdleMemory(b *testing.B) {
	n := envInt(b, "BENCH_IDLE_TENANTS", 1000)
	settle := envDuration(b, "BENCH_IDLE_SETTLE", 20*time.Second)
	counts := []int{10, n}
	rss := make([]float64, len(counts))
	heap := make([]float64, len(counts))
	for i, c := range counts {
		rss[i], heap[i] = idleMemory(b, c, settle)
		b.Logf("%d idle tenants: RSS %.1f MiB, Go heap in use %.1f MiB, after %v", c, rss[i], heap[i], settle)
	}
	d := float64(counts[1] - counts[0])
	b.Logf("per idle tenant: RSS %.3f MiB, heap %.3f MiB ((%d tenants − %d) / %d)",
		(rss[1]-rss[0])/d, (heap[1]-heap[0])/d, counts[1], counts[0], counts[1]-counts[0])
	b.ReportMetric((rss[1]-rss[0])/d, "rss-MiB/tenant")
	b.ReportMetric((heap[1]-heap[0])/d, "heap-MiB/tenant")
	b.ReportMetric(rss[1], "rss-MiB")
}

// idleMemory runs a worker over n idle tenants for settle and returns its
// resident set and Go heap in use, in MiB.
func idleMemory(b *testing.B, n int, settle time.Duration) (rss, heap float64) {
	b.Helper()
	opts := options{tenants: tenantNames("t", n), windows: documented(), maxConsumers: -1}
	if st, err := os.Stat("/dev/shm"); err == nil && st.IsDir() {
		opts.natsDir = "/dev/shm"
	}
	h := newHarness(b, opts)
	defer h.close()
	h.prepare(5 * time.Minute)
	p := h.startWorker()
	h.waitStarted(p, 5*time.Minute)
	time.Sleep(settle)
	st, err := readProcStats(p.pid())
	if err != nil {
		b.Fatal(err)
	}
	inuse, err := scrapeGauge(p.http, "go_memstats_heap_inuse_bytes")
	if err != nil {
		b.Fatal(err)
	}
	if err := h.exitedEarly(); err != nil {
		b.Fatal(err)
	}
	if err := p.stop(20 * time.Second); err != nil {
		b.Fatal(err)
	}
	return mb(st.rss), inuse / (1 << 20)
}

// scrapeGauge reads one unlabelled series from a worker's /metrics.
func scrapeGauge(addr, name string) (float64, error) {
	resp, err := (&http.Client{Timeout: 10 * time.Second}).Get("http://" + addr + "/metrics")
	if err != nil {
		return 0, err
	}
	defer func() { _ = resp.Body.Close() }()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), name+" "); ok {
			return strconv.ParseFloat(strings.TrimSpace(v), 64)
		}
	}
	if err := sc.Err(); err != nil {
		return 0, err
	}
	return 0, fmt.Errorf("%s: no %s", addr, name)
}
