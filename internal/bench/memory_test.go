package bench

import (
	"fmt"
	"testing"
	"time"

	"github.com/contoso-secops/mde-offboard/internal/mde/mdesim"
)

// BenchmarkBacklogMemory reports the worker's peak resident set (VmHWM)
// with 10,000 and with BENCH_BACKLOG (default 1,000,000) bulk requests
// waiting in the stream, published before the worker starts, after it has
// run for BENCH_BACKLOG_SECONDS (default 15). The limits are tiny, so the
// requests wait; the figures should not grow with the backlog.
func BenchmarkBacklogMemory(b *testing.B) {
	big := envInt(b, "BENCH_BACKLOG", 1_000_000)
	run := time.Duration(envInt(b, "BENCH_BACKLOG_SECONDS", 15)) * time.Second
	var peaks []int64
	for _, n := range []int{10_000, big} {
		b.Run(fmt.Sprintf("waiting=%d", n), func(b *testing.B) {
			r := backlogMemory(b, n, run)
			b.Logf("%d requests waiting (%d stored, published in %v, %.0f/s%s): after %v, worker peak RSS %.1f MiB, RSS %.1f MiB, CPU %v; "+
				"first call %v after launch; unrouted consumer still to read %d; offboard calls %d; worker warnings: %s; panics in the logs: %d",
				r.want, r.stored, r.publish.Round(time.Millisecond), float64(r.stored)/r.publish.Seconds(), r.publishErr,
				run, mb(r.stats.hwm), mb(r.stats.rss), r.stats.cpu.Round(time.Millisecond),
				r.firstCall, r.unroutedPending, r.calls, r.logs, r.panics)
			b.ReportMetric(mb(r.stats.hwm), "peak-MiB")
			b.ReportMetric(mb(r.stats.rss), "rss-MiB")
			b.ReportMetric(r.stats.cpu.Seconds(), "cpu-s")
			b.ReportMetric(float64(r.stored), "stored")
			peaks = append(peaks, r.stats.hwm)
		})
	}
	if len(peaks) == 2 && peaks[0] > 0 {
		b.Logf("peak RSS with %d waiting / with 10000 waiting: %.2f", big, float64(peaks[1])/float64(peaks[0]))
	}
}

type backlogFigures struct {
	want, stored    int
	publish         time.Duration
	publishErr      string
	stats           procStats
	firstCall       string
	unroutedPending uint64
	calls           int
	logs            string
	panics          int
}

func backlogMemory(b *testing.B, n int, run time.Duration) backlogFigures {
	b.Helper()
	// One call an hour: the worker takes one request and the rest wait.
	// Only the first devices exist; the others are never called.
	h := newHarness(b, options{tenants: []string{"t0"}, machines: 10,
		windows: []mdesim.Window{{Count: 1, Length: time.Hour}}})
	h.prepare(time.Minute)
	f := backlogFigures{want: n}
	reqs := make([]request, n)
	for i := range reqs {
		reqs[i] = request{tenant: h.tenants[0], id: fmt.Sprintf("r%07d", i), device: i, bulk: true}
	}
	h.progress("publishing %d requests", n)
	start := time.Now()
	stored, err := h.publishAsync(reqs)
	f.publish, f.stored = time.Since(start), stored
	if err != nil {
		// A limit of the stream or the server: report it, measure what is there.
		f.publishErr = fmt.Sprintf("; publishing stopped: %v", err)
		b.Logf("%d requests: %v", n, err)
	}
	h.progress("published %d in %v; worker runs for %v", stored, f.publish.Round(time.Millisecond), run)

	p := h.startWorker()
	deadline := time.Now().Add(run)
	f.firstCall = "no call"
	for time.Now().Before(deadline) {
		if f.firstCall == "no call" && h.calls.of(h.tenants[0].id) > 0 {
			f.firstCall = time.Since(p.started).Round(time.Millisecond).String()
		}
		if err := h.exitedEarly(); err != nil {
			b.Fatal(err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if f.stats, err = readProcStats(p.pid()); err != nil {
		b.Fatal(err)
	}
	f.calls = h.calls.of(h.tenants[0].id)
	cons, err := h.js.Consumer(b.Context(), streamRequests, consumerAll)
	if err != nil {
		b.Fatal(err)
	}
	info, err := cons.Info(b.Context())
	if err != nil {
		b.Fatal(err)
	}
	f.unroutedPending = info.NumPending + uint64(info.NumAckPending)
	f.logs, f.panics = h.logSummary()
	if err := p.stop(20 * time.Second); err != nil {
		b.Fatal(err)
	}
	return f
}
