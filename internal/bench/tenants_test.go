package bench

import (
	"os"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"
)

// BenchmarkTenants1000 configures BENCH_TENANTS (default 1000) tenants in
// one worker process with the documented windows in real time (100/1m and
// 1500/1h), each with 120 requests waiting before the worker starts. To keep
// up with the per-minute rate the worker must make the first 100 calls of
// every tenant within a minute. It reports how long that took, the calls/s,
// and the worker's peak RSS and CPU time. The simulator, NATS and the
// benchmark share the machine with the worker; their CPU time is reported
// beside it.
func BenchmarkTenants1000(b *testing.B) {
	const waiting, mark = 120, 100
	n := envInt(b, "BENCH_TENANTS", 1000)
	timeout := envDuration(b, "BENCH_TENANTS_TIMEOUT", 4*time.Minute)
	windows := documented()
	opts := options{tenants: tenantNames("t", n), machines: waiting, windows: windows, latency: 100 * time.Millisecond}
	// NATS stores on disk (the test's temporary directory), as a real
	// server does. BENCH_TENANTS_STORE=shm puts it on /dev/shm instead, to
	// see the worker without the cost of NATS's consumer state files on
	// this shared machine.
	store := "disk"
	if os.Getenv("BENCH_TENANTS_STORE") == "shm" {
		if st, err := os.Stat("/dev/shm"); err == nil && st.IsDir() {
			opts.natsDir, store = "/dev/shm", "/dev/shm"
		}
	}
	h := newHarness(b, opts)
	setupTook, err := h.tryPrepare(5 * time.Minute)
	refused := 0.0
	if err != nil {
		// NATS allows 1000 consumers per stream unless told otherwise; the
		// worker needs two per tenant. Say so, then lift the server's limit.
		if !strings.Contains(err.Error(), "maximum consumers limit reached") {
			b.Fatal(err)
		}
		refused = 1
		logs, _ := h.logSummary()
		b.Logf("%d tenants: the worker does not start on a NATS server with its default of 1000 consumers per stream "+
			"(%d consumer creations refused: \"maximum consumers limit reached\"; its log: %s); "+
			"measured again with the server's default_max_consumers -1",
			n, h.countInLogs("maximum consumers limit reached"), shorten(logs, 300))
		h.close()
		opts.maxConsumers = -1
		h = newHarness(b, opts)
		setupTook = h.prepare(5 * time.Minute)
	}
	h.progress("setup of %d tenants took %v; publishing", n, setupTook.Round(time.Millisecond))
	pubStart := time.Now()
	if _, err := h.publishAsync(requests(h.tenants, waiting, false)); err != nil {
		b.Fatal(err)
	}
	h.progress("published %d in %v", n*waiting, time.Since(pubStart).Round(time.Millisecond))

	h.calls.setMark(mark)
	cpu0 := selfCPU()
	p := h.startWorker()
	started := h.waitStarted(p, timeout)
	ready := p.ready()
	var (
		firstCall time.Time
		total     int
		reached   int
		at        []time.Time
		peak      procStats
	)
	deadline := p.started.Add(timeout)
	for {
		firstCall, total, reached, at = h.calls.snapshot()
		if st, err := readProcStats(p.pid()); err == nil {
			peak = st
		}
		if reached == n || time.Now().After(deadline) {
			break
		}
		if err := h.exitedEarly(); err != nil {
			b.Fatal(err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	end := time.Now()
	fds := openFiles(p.pid())
	// The tenants now wait for their minute window: the worker is idle.
	readyIdle := p.ready()
	if reached == n {
		end = slices.MaxFunc(at, func(x, y time.Time) int { return x.Compare(y) })
	}
	cpuSelf := selfCPU() - cpu0
	if firstCall.IsZero() {
		b.Fatalf("no offboard call within %v of the start\n%s", timeout, h.logTail())
	}
	at60 := 0 // tenants at the mark within a minute of the first call
	for _, t := range at {
		if t.Sub(firstCall) <= time.Minute {
			at60++
		}
	}
	calls60 := 0 // offboard calls admitted within a minute of the first call
	for _, c := range h.sim.Calls() {
		if c.API == "offboard" && !c.Throttled && c.TenantID != "" && !c.At.After(firstCall.Add(time.Minute)) {
			calls60++
		}
	}
	throttled := 0
	for _, t := range h.tenants {
		throttled += h.sim.ThrottledCount(t.id, "offboard")
	}
	logs, panics := h.logSummary()

	slices.SortFunc(at, func(x, y time.Time) int { return x.Compare(y) })
	took := func(q float64) time.Duration {
		if len(at) == 0 {
			return 0
		}
		i := min(int(q*float64(len(at))+0.5), len(at)) - 1
		return at[max(i, 0)].Sub(firstCall)
	}
	span := end.Sub(firstCall)
	rate := float64(total) / span.Seconds()
	if reached < n {
		b.Logf("only %d of %d tenants reached %d calls within %v of the start", reached, n, mark, timeout)
	}
	b.Logf("%d tenants × %d waiting, windows %s, simulator latency 100ms: first start (creates streams and consumers) %v; "+
		"second start over the backlog %v, then /readyz answered %s; first call %v after launch; %d calls each: all tenants after %v from the first call (half after %v, 90%% after %v); "+
		"%d of %d tenants there within a minute of the first call (%d calls in that minute, %d needed); %d calls at %.0f calls/s; 429s %d",
		n, waiting, windowsString(windows), setupTook.Round(time.Millisecond),
		started.Round(time.Millisecond), ready, firstCall.Sub(p.started).Round(time.Millisecond),
		mark, span.Round(time.Millisecond), took(0.5).Round(time.Millisecond), took(0.9).Round(time.Millisecond),
		at60, n, calls60, n*mark, total, rate, throttled)
	b.Logf("worker: peak RSS %.1f MiB, CPU %v over %v since launch, %d open files; this process (NATS on %s, simulator, publisher): CPU %v; "+
		"%d cores shared; afterwards, idle, /readyz answered %s; worker warnings: %s; panics in the logs: %d",
		mb(peak.hwm), peak.cpu.Round(time.Millisecond), end.Sub(p.started).Round(time.Millisecond), fds, store, cpuSelf.Round(time.Millisecond),
		runtime.NumCPU(), readyIdle, logs, panics)
	b.ReportMetric(span.Seconds(), "s-to-100-each")
	b.ReportMetric(float64(reached), "tenants-at-100")
	b.ReportMetric(float64(at60), "tenants-at-100-in-60s")
	b.ReportMetric(float64(calls60), "calls-in-first-60s")
	b.ReportMetric(rate, "calls/s")
	b.ReportMetric(mb(peak.hwm), "peak-MiB")
	b.ReportMetric(peak.cpu.Seconds(), "worker-cpu-s")
	b.ReportMetric(cpuSelf.Seconds(), "nats+sim-cpu-s")
	b.ReportMetric(firstCall.Sub(p.started).Seconds(), "s-to-first-call")
	b.ReportMetric(refused, "refused-by-default-nats")
	b.ReportMetric(setupTook.Seconds(), "first-start-s")
	b.ReportMetric(started.Seconds(), "start-s")
}
