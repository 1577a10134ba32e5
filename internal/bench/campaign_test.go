package bench

import (
	"bufio"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/contoso-secops/mde-offboard/internal/mde/mdesim"
	"github.com/contoso-secops/mde-offboard/offboard"
)

var (
	ctlOnce sync.Once
	ctlBin  string
	ctlErr  error
)

// offboardctlBinary builds ./cmd/offboardctl once per test process.
func offboardctlBinary(tb testing.TB) string {
	tb.Helper()
	ctlOnce.Do(func() {
		dir, err := os.MkdirTemp("", "mde-offboard-bench-ctl-")
		if err != nil {
			ctlErr = err
			return
		}
		ctlBin = filepath.Join(dir, "offboardctl")
		out, err := exec.Command("go", "build", "-o", ctlBin, "github.com/contoso-secops/mde-offboard/cmd/offboardctl").CombinedOutput()
		if err != nil {
			ctlErr = fmt.Errorf("go build ./cmd/offboardctl: %w\n%s", err, out)
		}
	})
	if ctlErr != nil {
		tb.Fatal(ctlErr)
	}
	return ctlBin
}

// BenchmarkCampaignPublish reports how fast offboardctl campaign run
// publishes a CSV of 10,000 and of BENCH_CAMPAIGN_ROWS (default 100,000)
// rows, and its peak resident set once every row is stored, with no worker
// running: only the publishing is measured. The peak should not grow with
// the rows (the CSV is streamed; a row costs ten bytes of state).
func BenchmarkCampaignPublish(b *testing.B) {
	big := envInt(b, "BENCH_CAMPAIGN_ROWS", 100_000)
	var peaks []int64
	for _, n := range []int{10_000, big} {
		b.Run(fmt.Sprintf("rows=%d", n), func(b *testing.B) {
			took, st := campaignPublish(b, n)
			rate := float64(n) / took.Seconds()
			b.Logf("%d rows stored in %v: %.0f rows/s; offboardctl peak RSS %.1f MiB, CPU %v",
				n, took.Round(time.Millisecond), rate, mb(st.hwm), st.cpu.Round(time.Millisecond))
			b.ReportMetric(rate, "rows/s")
			b.ReportMetric(mb(st.hwm), "peak-MiB")
			peaks = append(peaks, st.hwm)
		})
	}
	if len(peaks) == 2 && peaks[0] > 0 {
		b.Logf("peak RSS with %d rows / with 10000 rows: %.2f", big, float64(peaks[1])/float64(peaks[0]))
	}
}

func campaignPublish(b *testing.B, n int) (time.Duration, procStats) {
	b.Helper()
	ctl := offboardctlBinary(b)
	h := newHarness(b, options{tenants: []string{"t0"}, machines: 1, windows: []mdesim.Window{{Count: 1, Length: time.Hour}}})
	h.prepare(time.Minute) // streams and consumers; the worker is stopped
	csvPath := filepath.Join(h.dir, "bench.csv")
	writeBenchCSV(b, csvPath, n)
	cmd := exec.Command(ctl, "--nats-url", h.ns.ClientURL(), "campaign", "run", "--tenant", h.tenants[0].name,
		"--csv", csvPath, "--report", filepath.Join(h.dir, "report.csv"), "--progress-every", "1h")
	cmd.Stdout, cmd.Stderr = nil, nil
	start := time.Now()
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()
	stream, err := h.js.Stream(b.Context(), offboard.StreamRequests)
	if err != nil {
		b.Fatal(err)
	}
	for {
		info, err := stream.Info(b.Context())
		if err != nil {
			b.Fatal(err)
		}
		if info.State.LastSeq >= uint64(n) {
			break
		}
		if time.Since(start) > 5*time.Minute {
			b.Fatalf("%d of %d rows stored after 5 minutes", info.State.LastSeq, n)
		}
		time.Sleep(5 * time.Millisecond)
	}
	took := time.Since(start)
	st, err := readProcStats(cmd.Process.Pid)
	if err != nil {
		b.Fatal(err)
	}
	_ = cmd.Process.Signal(syscall.SIGINT) // it would wait for results for ever
	return took, st
}

func writeBenchCSV(b *testing.B, path string, n int) {
	b.Helper()
	f, err := os.Create(path)
	if err != nil {
		b.Fatal(err)
	}
	w := bufio.NewWriter(f)
	_, _ = w.WriteString("machineId,comment\n")
	id := make([]byte, 20)
	for i := range n {
		_, _ = rand.Read(id)
		fmt.Fprintf(w, "%s,bench row %d\n", hex.EncodeToString(id), i+1)
	}
	if err := w.Flush(); err != nil {
		b.Fatal(err)
	}
	if err := f.Close(); err != nil {
		b.Fatal(err)
	}
}
