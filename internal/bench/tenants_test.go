package bench

import (
	"fmt"
	"net/http"
	"os"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// BenchmarkTenants1000 configures BENCH_TENANTS (default 1000) tenants in
// one worker process with the documented windows in real time (100/1m and
// 1500/1h), each with 120 requests waiting before the worker starts. To keep
// up with the per-minute rate the worker must make the first 100 calls of
// every tenant within a minute. It reports how long that took, the calls/s,
// and the worker's peak RSS and CPU time. The simulator, NATS and the
// benchmark share the machine with the worker; their CPU time is reported
// beside it.
//
// BENCH_REPLICAS (default 1) starts that many worker processes at once over
// the same tenants. Each then reports its own CPU time, peak RSS and
// offboard calls (from its /metrics), with the number of tenants whose calls
// came from more than one replica: replicas spread the tenants between them,
// so that number stays near zero once they have seen each other.
//
// It runs twice: against a simulator that speaks HTTP/1.1 only, where each
// call under way takes a connection, and against one that offers HTTP/2,
// where the calls share a few. Whether the Defender API offers HTTP/2 is
// not documented; the worker uses it where it is offered.
func BenchmarkTenants1000(b *testing.B) {
	for _, http2 := range []bool{false, true} {
		name := "http=1.1"
		if http2 {
			name = "http=2"
		}
		b.Run(name, func(b *testing.B) { benchTenants(b, http2) })
	}
}

func benchTenants(b *testing.B, http2 bool) {
	const waiting, mark = 120, 100
	n := envInt(b, "BENCH_TENANTS", 1000)
	replicas := envInt(b, "BENCH_REPLICAS", 1)
	if replicas < 1 {
		b.Fatalf("BENCH_REPLICAS=%d: at least one", replicas)
	}
	timeout := envDuration(b, "BENCH_TENANTS_TIMEOUT", 4*time.Minute)
	windows := documented()
	opts := options{tenants: tenantNames("t", n), machines: waiting, windows: windows, latency: 100 * time.Millisecond, http2: http2}
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
	procs := make([]*proc, replicas)
	for i := range procs {
		procs[i] = h.startWorker()
	}
	p := procs[0]
	var started time.Duration
	for _, q := range procs {
		started = max(started, h.waitStarted(q, timeout))
	}
	ready := p.ready()
	var (
		firstCall time.Time
		total     int
		reached   int
		at        []time.Time
		peak      = make([]procStats, replicas)
	)
	deadline := p.started.Add(timeout)
	for {
		firstCall, total, reached, at = h.calls.snapshot()
		for i, q := range procs {
			if st, err := readProcStats(q.pid()); err == nil {
				peak[i] = st
			}
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
	b.Logf("%d tenants × %d waiting, windows %s, simulator latency 100ms, %s: first start (creates streams and consumers) %v; "+
		"second start over the backlog %v, then /readyz answered %s; first call %v after launch; %d calls each: all tenants after %v from the first call (half after %v, 90%% after %v); "+
		"%d of %d tenants there within a minute of the first call (%d calls in that minute, %d needed); %d calls at %.0f calls/s; 429s %d",
		n, waiting, windowsString(windows), apiProtocol(http2), setupTook.Round(time.Millisecond),
		started.Round(time.Millisecond), ready, firstCall.Sub(p.started).Round(time.Millisecond),
		mark, span.Round(time.Millisecond), took(0.5).Round(time.Millisecond), took(0.9).Round(time.Millisecond),
		at60, n, calls60, n*mark, total, rate, throttled)
	var workerCPU time.Duration
	var peakRSS int64
	for _, st := range peak {
		workerCPU += st.cpu
		peakRSS = max(peakRSS, st.hwm)
	}
	b.Logf("worker: peak RSS %.1f MiB, CPU %v over %v since launch, %d open files; this process (NATS on %s, simulator, publisher): CPU %v; "+
		"%d cores shared; afterwards, idle, /readyz answered %s; worker warnings: %s; panics in the logs: %d",
		mb(peakRSS), workerCPU.Round(time.Millisecond), end.Sub(p.started).Round(time.Millisecond), fds, store, cpuSelf.Round(time.Millisecond),
		runtime.NumCPU(), readyIdle, logs, panics)
	if replicas > 1 {
		b.Log(replicaSplit(procs, peak))
	}
	b.ReportMetric(span.Seconds(), "s-to-100-each")
	b.ReportMetric(float64(reached), "tenants-at-100")
	b.ReportMetric(float64(at60), "tenants-at-100-in-60s")
	b.ReportMetric(float64(calls60), "calls-in-first-60s")
	b.ReportMetric(rate, "calls/s")
	b.ReportMetric(mb(peakRSS), "peak-MiB")
	b.ReportMetric(workerCPU.Seconds(), "worker-cpu-s")
	b.ReportMetric(cpuSelf.Seconds(), "nats+sim-cpu-s")
	b.ReportMetric(firstCall.Sub(p.started).Seconds(), "s-to-first-call")
	b.ReportMetric(refused, "refused-by-default-nats")
	b.ReportMetric(setupTook.Seconds(), "first-start-s")
	b.ReportMetric(started.Seconds(), "start-s")
}

func apiProtocol(http2 bool) string {
	if http2 {
		return "API offering HTTP/2"
	}
	return "API speaking HTTP/1.1 only"
}

// replicaSplit says how the replicas shared the work: each one's offboard
// calls, tenants, CPU time and peak RSS (from /proc and its /metrics), and
// how many tenants had calls from more than one replica.
func replicaSplit(procs []*proc, peak []procStats) string {
	var parts []string
	callers := map[string]int{} // tenant -> replicas that called for it
	for i, q := range procs {
		calls, err := scrapeCalls(q.http)
		if err != nil {
			parts = append(parts, fmt.Sprintf("replica %d: %v", i, err))
			continue
		}
		sum := 0
		for t, c := range calls {
			sum += c
			callers[t]++
		}
		parts = append(parts, fmt.Sprintf("replica %d: %d calls for %d tenants, CPU %v, peak RSS %.1f MiB",
			i, sum, len(calls), peak[i].cpu.Round(time.Millisecond), mb(peak[i].hwm)))
	}
	shared := 0
	for _, n := range callers {
		if n > 1 {
			shared++
		}
	}
	return fmt.Sprintf("%s; %d of %d tenants had calls from more than one replica", strings.Join(parts, "; "), shared, len(callers))
}

// scrapeCalls reads a worker's offboard calls by tenant from its /metrics
// (mde_offboard_api_calls_total with api="offboard", every code).
func scrapeCalls(addr string) (map[string]int, error) {
	resp, err := (&http.Client{Timeout: 10 * time.Second}).Get("http://" + addr + "/metrics")
	if err != nil {
		return nil, err
	}
	defer func() { _ = resp.Body.Close() }()
	parser := expfmt.NewTextParser(model.UTF8Validation)
	mfs, err := parser.TextToMetricFamilies(resp.Body)
	if err != nil {
		return nil, fmt.Errorf("%s/metrics: %w", addr, err)
	}
	out := map[string]int{}
	for _, m := range mfs["mde_offboard_api_calls_total"].GetMetric() {
		labels := map[string]string{}
		for _, l := range m.GetLabel() {
			labels[l.GetName()] = l.GetValue()
		}
		if labels["api"] == "offboard" && m.GetCounter().GetValue() > 0 {
			out[labels["tenant"]] += int(m.GetCounter().GetValue())
		}
	}
	return out, nil
}
