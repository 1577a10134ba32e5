package bench

import (
	"bufio"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/contoso-secops/mde-offboard/internal/mde/mdesim"
)

// BenchmarkTracking250k reports what following many Machine Actions costs
// a worker: with 10,000 and with BENCH_TRACKED (default 250,000) actions
// in the ledger (seeded directly, as the tracker stores them, all due
// within the first scaled hour), after the worker has run for
// BENCH_TRACKING_SECONDS (default 40), its peak resident set, how long its
// scans of the ledger took, and its looks (GET /api/machineactions/{id})
// in any scaled hour against the quota (documented limits, compressed).
// The seeded actions do not exist in the simulator: every look reads 404,
// which takes quota all the same.
func BenchmarkTracking250k(b *testing.B) {
	big := envInt(b, "BENCH_TRACKED", 250_000)
	run := time.Duration(envInt(b, "BENCH_TRACKING_SECONDS", 40)) * time.Second
	var peaks []int64
	for _, n := range []int{10_000, big} {
		b.Run(fmt.Sprintf("followed=%d", n), func(b *testing.B) {
			r := trackingFigures(b, n, run)
			b.Logf("%d actions followed (seeded in %v): after %v, worker peak RSS %.1f MiB, RSS %.1f MiB, CPU %v; "+
				"scans of the ledger: %s; looks: %d, at most %d in a scaled hour (quota %d, tracking's half %d); "+
				"gauges: tracked_actions %s, tracking_lag_seconds %s; worker warnings: %s; panics in the logs: %d",
				n, r.seed.Round(time.Millisecond), run, mb(r.stats.hwm), mb(r.stats.rss), r.stats.cpu.Round(time.Millisecond),
				r.scans, r.looks, r.maxHour, r.quota, r.quota-r.quota/2, r.gauges["mde_offboard_tracked_actions"],
				r.gauges["mde_offboard_tracking_lag_seconds"], r.logs, r.panics)
			b.ReportMetric(mb(r.stats.hwm), "peak-MiB")
			b.ReportMetric(r.firstScan.Seconds(), "scan-s")
			b.ReportMetric(float64(r.maxHour), "looks/scaled-h")
			peaks = append(peaks, r.stats.hwm)
		})
	}
	if len(peaks) == 2 && peaks[0] > 0 {
		b.Logf("peak RSS with %d followed / with 10000 followed: %.2f", big, float64(peaks[1])/float64(peaks[0]))
	}
}

type trackingResult struct {
	seed           time.Duration
	stats          procStats
	scans          string
	firstScan      time.Duration
	looks, maxHour int
	quota          int
	gauges         map[string]string
	logs           string
	panics         int
}

func trackingFigures(b *testing.B, n int, run time.Duration) trackingResult {
	b.Helper()
	factor := timeScale(b)
	ws := scaled(documented(), factor)
	h := newHarness(b, options{tenants: []string{"t0"}, machines: 1, windows: ws})
	h.prepare(time.Minute)
	hour := time.Duration(float64(time.Hour) / factor)
	h.enableTracking(factor)
	r := trackingResult{quota: ws[len(ws)-1].Count}
	h.progress("seeding %d tracked actions", n)
	start := time.Now()
	h.seedTracked(n, hour)
	r.seed = time.Since(start)

	p := h.startWorker("--log-level", "info")
	deadline := time.Now().Add(run)
	for time.Now().Before(deadline) {
		if err := h.exitedEarly(); err != nil {
			b.Fatal(err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	var err error
	if r.stats, err = readProcStats(p.pid()); err != nil {
		b.Fatal(err)
	}
	r.gauges = scrapeGauges(b, p.http, "mde_offboard_tracked_actions", "mde_offboard_tracking_lag_seconds")
	for _, c := range h.sim.Calls() {
		if c.API == mdesim.APIMachineActions && c.Method == http.MethodGet {
			r.looks++
		}
	}
	r.maxHour = h.sim.MaxInWindow(h.tenants[0].id, mdesim.APIMachineActions, mdesim.Window{Count: r.quota, Length: hour})
	r.scans, r.firstScan = scanTimes(b, p.log)
	r.logs, r.panics = h.logSummary()
	if err := p.stop(20 * time.Second); err != nil {
		b.Fatal(err)
	}
	return r
}

// enableTracking turns tracking on for the (last) tenant of the tenants
// file, with the default settings compressed like the windows.
func (h *harness) enableTracking(factor float64) {
	h.tb.Helper()
	d := func(v time.Duration) string { return time.Duration(float64(v) / factor).String() }
	f, err := os.OpenFile(h.config, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		h.tb.Fatal(err)
	}
	_, err = fmt.Fprintf(f, "    tracking:\n      enabled: true\n      firstCheck: %s\n      maxInterval: %s\n      maxAge: %s\n",
		d(time.Minute), d(time.Hour), d(168*time.Hour))
	if err := errors.Join(err, f.Close()); err != nil {
		h.tb.Fatal(err)
	}
}

// seedTracked stores n followed actions of the first tenant in the ledger,
// as the tracker does, due one after the other over the first hour.
func (h *harness) seedTracked(n int, hour time.Duration) {
	h.tb.Helper()
	t := h.tenants[0]
	now := time.Now().UTC()
	for i := range n {
		id := fmt.Sprintf("bench-action-%07d", i)
		state, err := json.Marshal(map[string]any{
			"requestId": fmt.Sprintf("r%07d", i), "machineId": machineID(t.index, i), "actionId": id,
			"status": "Pending", "since": now, "next": now.Add(time.Duration(i) * hour / time.Duration(n)),
			"interval": hour,
		})
		if err != nil {
			h.tb.Fatal(err)
		}
		key := "a." + t.name + "." + base64.RawURLEncoding.EncodeToString([]byte(id))
		if _, err := h.js.PublishAsync("$KV."+bucketLedger+"."+key, state); err != nil {
			h.tb.Fatal(err)
		}
		if i%2000 == 1999 || i == n-1 { // within the client's limit of messages in flight
			select {
			case <-h.js.PublishAsyncComplete():
			case <-time.After(time.Minute):
				h.tb.Fatal("seeding the ledger stalled for a minute")
			}
		}
	}
}

// scrapeGauges reads the named series from a worker's /metrics.
func scrapeGauges(tb testing.TB, addr string, names ...string) map[string]string {
	tb.Helper()
	out := map[string]string{}
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		tb.Logf("scrape: %v", err)
		return out
	}
	defer func() { _ = resp.Body.Close() }()
	body, _ := io.ReadAll(resp.Body)
	for line := range strings.SplitSeq(string(body), "\n") {
		for _, name := range names {
			if strings.HasPrefix(line, name+"{") {
				out[name] = line[strings.LastIndexByte(line, ' ')+1:]
			}
		}
	}
	return out
}

// scanTimes lists the tracker's scans of the ledger from a worker's log
// ("tracked actions loaded"), and returns the first one's duration.
func scanTimes(tb testing.TB, path string) (string, time.Duration) {
	tb.Helper()
	f, err := os.Open(path)
	if err != nil {
		return err.Error(), 0
	}
	defer func() { _ = f.Close() }()
	var parts []string
	var first time.Duration
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		var rec map[string]any
		if json.Unmarshal(sc.Bytes(), &rec) != nil || rec["msg"] != "tracked actions loaded" {
			continue
		}
		took := durationField(rec["took"])
		if len(parts) == 0 {
			first = took
		}
		parts = append(parts, fmt.Sprintf("%v (%v followed, %v held)", took.Round(time.Millisecond), rec["followed"], rec["held"]))
	}
	if len(parts) == 0 {
		return "none logged", 0
	}
	return fmt.Sprintf("%d, %s", len(parts), strings.Join(parts, ", ")), first
}

// durationField reads a zap duration: seconds as a number, or a string.
func durationField(v any) time.Duration {
	switch x := v.(type) {
	case float64:
		return time.Duration(x * float64(time.Second))
	case string:
		if d, err := time.ParseDuration(x); err == nil {
			return d
		}
		if f, err := strconv.ParseFloat(x, 64); err == nil {
			return time.Duration(f * float64(time.Second))
		}
	}
	return 0
}
