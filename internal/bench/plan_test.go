package bench

import (
	"bytes"
	"encoding/csv"
	"errors"
	"testing"
	"time"

	"github.com/contoso-secops/mde-offboard/internal/mde/mdesim"
	"github.com/contoso-secops/mde-offboard/offboard"
)

// BenchmarkPlan100k plans a tenant of BENCH_PLAN_DEVICES (default
// 100,000) devices spread as in a real tenant (mdesim.Inventory): a worker
// process reads the devices not seen for 90 days page by page (10,000 a
// page, under the documented machines quota, in real time) and hands back
// the CSV through the plans bucket. It reports the time from the request
// to the CSV in hand, the machines calls, and the worker's peak RSS.
func BenchmarkPlan100k(b *testing.B) {
	n := envInt(b, "BENCH_PLAN_DEVICES", 100_000)
	h := newHarness(b, options{tenants: []string{"t0"}})
	for _, m := range mdesim.Inventory(n, 1, time.Now()) {
		h.sim.AddMachine(h.tenants[0].id, m)
	}
	h.prepare(time.Minute)
	p := h.startWorker()
	h.waitStarted(p, time.Minute)
	before, err := readProcStats(p.pid())
	if err != nil {
		b.Fatal(err)
	}
	// /healthz answers before the worker listens for plans: a request
	// sent before then finds nobody (ErrNoPlanner), and is sent again,
	// as an operator runs the command again.
	var (
		start time.Time
		reply *offboard.PlanReply
		data  []byte
	)
	for try := 0; try == 0 || errors.Is(err, offboard.ErrNoPlanner) && try < 3; try++ {
		start = time.Now()
		reply, data, err = offboard.RequestPlan(b.Context(), h.js, offboard.Subjects{}, "t0",
			offboard.PlanRequest{InactiveFor: 90 * 24 * time.Hour}, 10*time.Second)
	}
	took := time.Since(start)
	if err != nil {
		b.Fatal(err)
	}
	if reply.State != offboard.PlanDone {
		b.Fatalf("plan: %+v", reply.Error)
	}
	rows, err := csv.NewReader(bytes.NewReader(data)).ReadAll()
	if err != nil {
		b.Fatal(err)
	}
	after, err := readProcStats(p.pid())
	if err != nil {
		b.Fatal(err)
	}
	machines := 0
	for _, c := range h.sim.Calls() {
		if c.API == mdesim.APIMachines {
			machines++
		}
	}
	b.Logf("%d devices, %d in the plan (%d rows, %.1f MiB of CSV, via %s), %d inventory pages, %d machines calls, %d offboard calls: %v; "+
		"worker peak RSS %.1f MiB (%.1f MiB before the plan), CPU for the plan %v",
		n, reply.Count, len(rows)-1, float64(len(data))/(1<<20), via(reply), reply.Pages, machines, h.calls.of(h.tenants[0].id), took.Round(time.Millisecond),
		mb(after.hwm), mb(before.hwm), (after.cpu - before.cpu).Round(time.Millisecond))
	b.ReportMetric(took.Seconds(), "plan-s")
	b.ReportMetric(mb(after.hwm), "peak-MiB")
	b.ReportMetric(float64(reply.Count), "devices")
	if err := p.stop(20 * time.Second); err != nil {
		b.Fatal(err)
	}
}

func via(r *offboard.PlanReply) string {
	if r.Object != "" {
		return "the plans bucket"
	}
	return "the reply"
}
