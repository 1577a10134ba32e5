package bench

import (
	"fmt"
	"maps"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/contoso-secops/mde-offboard/internal/mde/mdesim"
)

// drainCase is a backlog of distinct devices drained by worker processes.
type drainCase struct {
	tenants  int
	requests int // per tenant
	replicas int // worker processes at once
	kills    int // SIGKILL and restart the (single) worker this many times
	windows  []mdesim.Window
	latency  time.Duration // the simulator's, per call
	ackWait  time.Duration
	margin   []string // --quota-margin and --call-timeout, scaled like the windows
	timeout  time.Duration
	// backlogFirst: the requests are published before the workers start
	// (after a first worker has set up the streams and stopped), not
	// while they run. At 200 times compression the benchmark's own
	// publish of 9000 requests, on the same two cores as the worker's
	// start, slows the first window's calls, and the sliding windows
	// carry that to the end; a publisher runs elsewhere in production.
	backlogFirst bool
}

// drainTenant holds one tenant's figures.
type drainTenant struct {
	name        string
	calls       tenantCalls
	ideal       time.Duration // greedy schedule, first to last call
	results     int
	extraCopies int
	others      map[string]int // outcomes other than created
	wall        time.Duration  // the publish's start (the workers' with backlogFirst) to the tenant's last result
}

func (t drainTenant) efficiency() float64 {
	span := t.calls.last.Sub(t.calls.first)
	if span <= 0 {
		return 0
	}
	return float64(t.ideal) / float64(span)
}

type drainResult struct {
	want     int // results expected per tenant
	tenants  []drainTenant
	kills    int             // kills done
	restarts []time.Duration // launch to /healthz after each kill
	crashes  int             // workers that exited on their own (restarted)
	wall     time.Duration
	logs     string
	panics   int
}

// runDrain publishes the backlog, runs the workers (killing and restarting
// as asked), and waits for every result or the timeout.
func runDrain(tb testing.TB, c drainCase) drainResult {
	tb.Helper()
	h := newHarness(tb, options{
		tenants: tenantNames("t", c.tenants), machines: c.requests, windows: c.windows, latency: c.latency,
	})
	args := append([]string{"--ack-wait", c.ackWait.String()}, c.margin...)
	if c.kills > 0 && c.replicas == 1 {
		// A killed worker comes back under its name, as a crashed pod's
		// container does (deploy/kubernetes sets it to the pod's name).
		args = append(args, "--replica-id", "drain-worker")
	}
	if c.backlogFirst {
		h.prepare(time.Minute, args...)
	} else {
		for range c.replicas {
			h.startWorker(args...)
		}
		h.waitSetup(time.Minute)
	}
	col := h.collect()
	reqs := requests(h.tenants, c.requests, false)
	h.progress("publishing %d requests", len(reqs))
	start := time.Now()
	if _, err := h.publishAsync(reqs); err != nil {
		tb.Fatal(err)
	}
	h.progress("published in %v; draining", time.Since(start).Round(time.Millisecond))
	if c.backlogFirst {
		start = time.Now()
		for range c.replicas {
			h.startWorker(args...)
		}
	}

	var res drainResult
	// Kills spread over the drain's calls, not its clock: the ideal
	// schedule's call k·n/(kills+1) for kill k, so that each one lands
	// while calls are under way rather than while a window holds them all.
	ideal := idealStarts(c.windows, c.requests)
	span := ideal[len(ideal)-1]
	kills := 0
	for k := 1; k <= c.kills; k++ {
		at := start.Add(ideal[c.requests*k/(c.kills+1)])
		for time.Now().Before(at) && col.count() < len(reqs) {
			res.crashes += h.restartCrashed(args)
			time.Sleep(20 * time.Millisecond)
		}
		if col.count() >= len(reqs) {
			break
		}
		h.progress("kill %d at %v, %d results", k, time.Since(start).Round(time.Millisecond), col.count())
		h.newest().kill()
		kills++
		p := h.startWorker(args...)
		res.restarts = append(res.restarts, h.waitStarted(p, time.Minute))
	}
	got := h.waitFor(col, len(reqs), c.timeout-time.Since(start), func() { res.crashes += h.restartCrashed(args) })
	h.progress("%d of %d results after %v", got, len(reqs), time.Since(start).Round(time.Millisecond))
	// Let calls still under way land before reading the simulator.
	time.Sleep(200 * time.Millisecond)

	res.want, res.kills = c.requests, kills
	calls := h.sim.Calls()
	for _, t := range h.tenants {
		d := drainTenant{name: t.name, calls: h.simView(t, calls, c.windows), ideal: span}
		var last time.Time
		d.results, d.extraCopies, d.others, last = col.tenantSummary(t.name)
		if !last.IsZero() {
			d.wall = last.Sub(start)
		}
		res.wall = max(res.wall, d.wall)
		res.tenants = append(res.tenants, d)
	}
	res.logs, res.panics = h.logSummary()
	return res
}

func (r drainResult) log(tb testing.TB, c drainCase) {
	tb.Helper()
	for _, t := range r.tenants {
		others := ""
		if len(t.others) > 0 {
			keys := slices.Sorted(maps.Keys(t.others))
			var parts []string
			for _, k := range keys {
				parts = append(parts, fmt.Sprintf("%s %d", k, t.others[k]))
			}
			others = "; not created: " + strings.Join(parts, ", ")
		}
		tb.Logf("%s: efficiency %.4f (ideal %v, actual %v); busiest windows %s; a place in the shortest window used again %v after it freed (median; 90%%: %v); "+
			"its first window's calls spread over %v; 429s %d; results %d/%d (+%d copies); actions %d, devices with 2+ actions %d, extra calls %d; last result at %v%s",
			t.name, t.efficiency(), t.ideal.Round(time.Millisecond), t.calls.last.Sub(t.calls.first).Round(time.Millisecond),
			t.calls.windowsString(c.windows), t.calls.lag50.Round(10*time.Microsecond), t.calls.lag90.Round(10*time.Microsecond), t.calls.ramp.Round(100*time.Microsecond), t.calls.throttled, t.results, r.want, t.extraCopies,
			t.calls.actions, t.calls.dupActions, t.calls.extraCalls, t.wall.Round(time.Millisecond), others)
	}
	restarts := ""
	if len(r.restarts) > 0 {
		restarts = fmt.Sprintf(" (restarted, serving /healthz after %v)", r.restarts)
	}
	inFlight := "4 (the default)"
	if n := envInt(tb, "BENCH_MAX_IN_FLIGHT", 0); n > 0 {
		inFlight = strconv.Itoa(n)
	}
	tb.Logf("windows %s, simulator latency %v, maxInFlight %s, %d worker process(es), %d kill(s)%s, ack wait %v%s; worker warnings: %s; "+
		"panics in the logs: %d; workers that exited on their own: %d",
		windowsString(c.windows), c.latency, inFlight, c.replicas, r.kills, restarts, c.ackWait,
		strings.Join(append([]string{""}, c.margin...), " "), r.logs, r.panics, r.crashes)
}

func (r drainResult) report(b *testing.B) {
	minEff, over, throttled, missing, dups, extra := 1.0, 0, 0, 0, 0, 0
	for _, t := range r.tenants {
		minEff = min(minEff, t.efficiency())
		over += t.calls.overLimit
		throttled += t.calls.throttled
		missing += r.want - t.results
		dups += t.calls.dupActions
		extra += t.calls.extraCalls
		b.ReportMetric(t.efficiency(), t.name+"-efficiency")
	}
	b.ReportMetric(minEff, "min-efficiency")
	b.ReportMetric(float64(over), "calls-over-limit")
	b.ReportMetric(float64(throttled), "window-429s")
	b.ReportMetric(float64(missing), "missing-results")
	b.ReportMetric(float64(dups), "duplicate-actions")
	b.ReportMetric(float64(extra), "extra-calls")
	b.ReportMetric(r.wall.Seconds(), "wall-s")
	b.ReportMetric(float64(r.crashes), "worker-exits")
}

// BenchmarkDrain drains 3 tenants × 3000 distinct devices under the
// documented windows compressed by BENCH_SCALE, with one worker process,
// three at once, and one killed and restarted five times; then once more
// with one worker at BENCH_DRAIN_FAST (default 200) times compression,
// where the worker's own speed, not the windows, starts to set the pace,
// over a backlog published before it starts (backlogFirst).
// Efficiency is the ideal span (greedy schedule, instantaneous calls)
// over the span between the first and last offboard call the simulator
// admitted for the tenant.
func BenchmarkDrain(b *testing.B) {
	factor := timeScale(b)
	fast := float64(envInt(b, "BENCH_DRAIN_FAST", 200))
	cases := []struct {
		name   string
		factor float64
		set    func(*drainCase)
	}{
		{"replicas=1", factor, func(*drainCase) {}},
		{"replicas=3", factor, func(c *drainCase) { c.replicas = 3 }},
		{"kill=5", factor, func(c *drainCase) { c.kills, c.ackWait = 5, 3*time.Second }},
		{fmt.Sprintf("scale=%.0f", fast), fast, func(c *drainCase) { c.backlogFirst = os.Getenv("BENCH_DRAIN_PUBLISH_DURING") != "1" }},
	}
	for _, tc := range cases {
		b.Run(tc.name, func(b *testing.B) {
			c := drainBase(b, tc.factor)
			tc.set(&c)
			r := runDrain(b, c) // once, whatever b.N: a drain takes minutes
			b.Logf("time compressed %.0f times", tc.factor)
			r.log(b, c)
			r.report(b)
		})
	}
}

// drainBase is BenchmarkDrain's backlog at a time compression factor: one
// worker, the documented windows, the simulator's 120 ms latency, the
// quota margin and the call timeout all compressed alike.
func drainBase(b *testing.B, factor float64) drainCase {
	c := drainCase{
		tenants: 3, requests: 3000, replicas: 1,
		windows: scaled(documented(), factor),
		latency: time.Duration(float64(120*time.Millisecond) / factor),
		ackWait: time.Minute,
		margin:  scaledArgs(b, factor, "quota-margin", "call-timeout"),
	}
	ideal := idealStarts(c.windows, c.requests)
	c.timeout = 3*ideal[len(ideal)-1] + 2*time.Minute
	return c
}

// TestDrainSharedQuota drains a small backlog with two worker processes at
// once: every request gets a result, the simulator sees no window exceeded
// (no 429 for a full window), and no device gets two actions.
func TestDrainSharedQuota(t *testing.T) {
	c := drainCase{
		tenants: 1, requests: 40, replicas: 2,
		windows: []mdesim.Window{{Count: 5, Length: 200 * time.Millisecond}, {Count: 20, Length: time.Second}},
		latency: 2 * time.Millisecond,
		ackWait: 5 * time.Second,
		timeout: 30 * time.Second, // generous: make test runs packages side by side
	}
	c.margin = scaledArgs(t, 300, "quota-margin") // 5/200ms is 100/1m compressed 300 times
	r := runDrain(t, c)
	r.log(t, c)
	for _, tr := range r.tenants {
		if tr.results != c.requests {
			t.Errorf("%s: %d results, want %d", tr.name, tr.results, c.requests)
		}
		if tr.calls.overLimit > 0 || tr.calls.throttled > 0 {
			t.Errorf("%s: windows exceeded: busiest %s, %d calls answered 429 for a full window",
				tr.name, tr.calls.windowsString(c.windows), tr.calls.throttled)
		}
		if tr.calls.dupActions > 0 {
			t.Errorf("%s: %d devices have more than one action", tr.name, tr.calls.dupActions)
		}
	}
}
