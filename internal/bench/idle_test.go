package bench

import (
	"maps"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
)

// BenchmarkIdleTenants configures BENCH_IDLE_TENANTS (default 1000) tenants
// in one worker process with nothing to do, and counts the JetStream API
// requests (pulls, consumer and stream infos, ...) the worker sends while
// they stay idle, over BENCH_IDLE_WINDOW (default 60s). It reports them per
// second and per idle tenant, with the subjects that carried the most.
func BenchmarkIdleTenants(b *testing.B) {
	n := envInt(b, "BENCH_IDLE_TENANTS", 1000)
	window := envDuration(b, "BENCH_IDLE_WINDOW", 60*time.Second)
	opts := options{tenants: tenantNames("t", n), windows: documented(), maxConsumers: -1}
	if st, err := os.Stat("/dev/shm"); err == nil && st.IsDir() {
		opts.natsDir = "/dev/shm"
	}
	h := newHarness(b, opts)
	setupTook := h.prepare(5 * time.Minute)
	h.progress("setup of %d tenants took %v; starting the worker", n, setupTook.Round(time.Millisecond))
	p := h.startWorker()
	started := h.waitStarted(p, 5*time.Minute)
	// The first look at every tenant's consumers comes with the start;
	// what follows is the idle cost.
	settle := 5 * time.Second
	time.Sleep(settle)

	var (
		mu     sync.Mutex
		bySubj = map[string]int{}
		total  int
	)
	sub, err := h.nc.Subscribe("$JS.API.>", func(m *nats.Msg) {
		mu.Lock()
		defer mu.Unlock()
		total++
		bySubj[apiKind(m.Subject)]++
	})
	if err != nil {
		b.Fatal(err)
	}
	if err := h.nc.Flush(); err != nil {
		b.Fatal(err)
	}
	h.progress("counting JetStream API requests for %v", window)
	time.Sleep(window)
	if err := sub.Unsubscribe(); err != nil {
		b.Fatal(err)
	}
	if err := h.exitedEarly(); err != nil {
		b.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	perSec := float64(total) / window.Seconds()
	kinds := slices.SortedFunc(maps.Keys(bySubj), func(x, y string) int { return bySubj[y] - bySubj[x] })
	var top []string
	for _, k := range kinds[:min(len(kinds), 5)] {
		top = append(top, k+" "+strconv.Itoa(bySubj[k]))
	}
	b.Logf("%d idle tenants, worker started in %v: %d JetStream API requests in %v (from %v after the start): "+
		"%.2f/s, %.4f/s per idle tenant; by kind: %s",
		n, started.Round(time.Millisecond), total, window, settle, perSec, perSec/float64(n), strings.Join(top, ", "))
	b.ReportMetric(perSec, "js-api-req/s")
	b.ReportMetric(perSec/float64(n), "js-api-req/s/tenant")
}

// apiKind is a JetStream API subject without its stream and consumer
// names: $JS.API.CONSUMER.INFO, $JS.API.CONSUMER.MSG.NEXT, ...
func apiKind(subject string) string {
	parts := strings.Split(subject, ".")
	switch {
	case len(parts) >= 5 && parts[2] == "CONSUMER" && parts[3] == "MSG":
		return strings.Join(parts[:5], ".")
	case len(parts) >= 4:
		return strings.Join(parts[:4], ".")
	}
	return subject
}
