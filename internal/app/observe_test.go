package app

import (
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/contoso-secops/mde-offboard/deploy"
	"github.com/contoso-secops/mde-offboard/internal/mde/mdesim"
	"github.com/contoso-secops/mde-offboard/internal/queue"
)

// maxSeriesPerTenant is the contract's bound: with 1000 tenants a replica
// exposes at most 50 series per tenant.
const maxSeriesPerTenant = 50

// scrape reads /metrics over HTTP.
func scrape(t *testing.T, e *env) map[string]*dto.MetricFamily {
	t.Helper()
	return scrapeApp(t, e.app)
}

// scrapeApp reads a's /metrics over HTTP.
func scrapeApp(t *testing.T, a *App) map[string]*dto.MetricFamily {
	t.Helper()
	resp, err := http.Get("http://" + a.HTTPAddr() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	p := expfmt.NewTextParser(model.UTF8Validation)
	mfs, err := p.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return mfs
}

// seriesOf counts the series a metric stores in Prometheus (a histogram:
// a bucket each, a sum and a count) and returns the sample names it has.
func seriesOf(mf *dto.MetricFamily, m *dto.Metric) (int, []string) {
	name := mf.GetName()
	if mf.GetType() == dto.MetricType_HISTOGRAM {
		return len(m.GetHistogram().GetBucket()) + 3, // + the +Inf bucket
			[]string{name + "_bucket", name + "_sum", name + "_count"}
	}
	if mf.GetType() == dto.MetricType_SUMMARY {
		return len(m.GetSummary().GetQuantile()) + 2, []string{name, name + "_sum", name + "_count"}
	}
	return 1, []string{name}
}

// TestMetricsTenTenants scrapes a live worker serving 10 tenants after
// each had requests answered: at most 50 series per tenant, every metric
// the dashboard, the alerts and the recording rules name is there, and
// has every label they use with it.
func TestMetricsTenTenants(t *testing.T) {
	var tenants []string
	for i := range 10 {
		tenants = append(tenants, fmt.Sprintf("tenant-%02d", i))
	}
	// Tracking on: its gauges exist only for tenants that follow actions;
	// a certificate's end only for tenants that sign with one.
	e := setup(t, envConfig{tenants: tenants, machines: 2, certs: tenants[:1], extra: "    tracking:\n      enabled: true\n"})
	results := e.collect("mde.offboard.result.>")
	for _, name := range tenants {
		for i, m := range e.tenants[name].machines {
			id := fmt.Sprintf("%s-%d", name, i)
			subject := "mde.offboard.request." + name
			if i == 1 {
				subject += ".bulk"
			}
			e.publish(subject, map[string]any{"requestId": id, "machineId": m.ID}, name+":"+id)
		}
		// One that fails: a failure code's series appears with it.
		e.publish("mde.offboard.request."+name, map[string]any{"requestId": name + "-bad", "machineId": "nope"}, name+":bad")
	}
	results.wait(t, 30, 30*time.Second)

	mfs := scrape(t, e)
	total, perTenant := 0, 0
	samples := map[string]bool{}
	labels := map[string][]string{} // of each sample name
	kinds := map[string]string{}    // of each sample name: deploy.Counter or deploy.Gauge
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			n, names := seriesOf(mf, m)
			for _, s := range names {
				samples[s] = true
				labels[s] = appendLabels(labels[s], mf, m, s)
				kinds[s] = sampleKind(mf, s)
			}
			total += n
			for _, lp := range m.GetLabel() {
				if lp.GetName() == "tenant" && lp.GetValue() != queue.UnknownTenant {
					perTenant += n
				}
			}
		}
	}
	figure := float64(perTenant) / float64(len(tenants))
	t.Logf("%d series, %d of them tenant-independent: %.1f series per tenant", total, total-perTenant, figure)
	if figure > maxSeriesPerTenant {
		t.Errorf("%.1f series per tenant, want at most %d", figure, maxSeriesPerTenant)
	}

	qs, err := deploy.Queries()
	if err != nil {
		t.Fatal(err)
	}
	recorded, err := deploy.Recorded()
	if err != nil {
		t.Fatal(err)
	}
	for _, q := range qs {
		names, err := deploy.MetricNames(q.Expr)
		if err != nil {
			t.Fatalf("%s: %v", q.Where, err)
		}
		for _, name := range names {
			if name == "up" || slices.Contains(recorded, name) {
				continue
			}
			if !samples[name] {
				t.Errorf("%s names %s, which /metrics lacks", q.Where, name)
			}
		}
	}
	if !samples["mde_offboard_request_to_result_seconds_bucket"] || !samples["mde_offboard_build_info"] {
		t.Error("/metrics lacks request_to_result_seconds or build_info")
	}

	// Every label a query uses with a metric is one of its labels.
	problems, err := deploy.CheckLabels(qs, labels)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		t.Error(p)
	}
	// rate() and increase() read counters (a histogram's _bucket too),
	// histogram_quantile a histogram's _bucket.
	problems, err = deploy.CheckTypes(qs, kinds)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		t.Error(p)
	}
	// A rate of a gauge is found: the check sees the kinds.
	gaugeRate := []deploy.Query{{Where: "a rate of a gauge", Expr: `sum by (tenant) (rate(mde_offboard_backlog_requests[5m]))`}}
	if problems, err := deploy.CheckTypes(gaugeRate, kinds); err != nil || len(problems) != 1 || !strings.Contains(problems[0], "mde_offboard_backlog_requests") {
		t.Errorf("rate of a gauge: problems %v, error %v; want the gauge named", problems, err)
	}
	// A label no metric has is found: the check sees the labels.
	wrong := slices.Clone(qs)
	for i, q := range wrong {
		if strings.Contains(q.Expr, "by (tenant)") {
			wrong[i].Expr = strings.Replace(q.Expr, "by (tenant)", "by (tenant_name)", 1)
			break
		}
	}
	if problems, err := deploy.CheckLabels(wrong, labels); err != nil || len(problems) == 0 || !strings.Contains(problems[0], `"tenant_name"`) {
		t.Errorf("a query grouping by tenant_name: problems %v, error %v; want the label named", problems, err)
	}
}

// sampleKind is what sample name s of mf is: a counter's samples and a
// histogram's or a summary's _bucket, _count and _sum only go up (but for
// a restart); the rest are gauges.
func sampleKind(mf *dto.MetricFamily, s string) string {
	switch mf.GetType() {
	case dto.MetricType_COUNTER:
		return deploy.Counter
	case dto.MetricType_HISTOGRAM:
		return deploy.Counter
	case dto.MetricType_SUMMARY:
		if s != mf.GetName() { // the quantiles are gauges
			return deploy.Counter
		}
	}
	return deploy.Gauge
}

// appendLabels adds the label names of metric m's sample name to have: a
// histogram's _bucket has le too, a summary's quantile series quantile.
func appendLabels(have []string, mf *dto.MetricFamily, m *dto.Metric, sample string) []string {
	add := func(name string) {
		if !slices.Contains(have, name) {
			have = append(have, name)
		}
	}
	for _, lp := range m.GetLabel() {
		add(lp.GetName())
	}
	switch {
	case mf.GetType() == dto.MetricType_HISTOGRAM && sample == mf.GetName()+"_bucket":
		add("le")
	case mf.GetType() == dto.MetricType_SUMMARY && sample == mf.GetName():
		add("quantile")
	}
	return have
}

// TestOldestWaiting: requests held back by a tenant's quota show in the
// backlog and the oldest waiting age of their priority.
func TestOldestWaiting(t *testing.T) {
	e := setup(t, envConfig{tenants: []string{"contoso"}, machines: 4, limits: `["1/1h"]`, noStart: true})
	e.opts.StatsEvery = 100 * time.Millisecond
	e.start()
	for i, m := range e.tenants["contoso"].machines {
		id := fmt.Sprintf("w-%d", i)
		e.publish("mde.offboard.request.contoso", map[string]any{"requestId": id, "machineId": m.ID}, "contoso:"+id)
	}
	labels := map[string]string{"tenant": "contoso", "priority": "normal"}
	eventually(t, 30*time.Second, "three requests waiting, the oldest for a while", func() bool { // a bound: a loaded machine once took over 10 s
		return metricValue(t, e, "mde_offboard_backlog_requests", labels) == 3 &&
			metricValue(t, e, "mde_offboard_oldest_waiting_seconds", labels) > 0.2
	})
	if v := metricValue(t, e, "mde_offboard_oldest_waiting_seconds", map[string]string{"tenant": "contoso", "priority": "bulk"}); v != 0 {
		t.Errorf("bulk: oldest waiting %v, want 0 (none waits)", v)
	}
	if age := metricValue(t, e, "mde_offboard_oldest_waiting_seconds", labels); age > 30 || strings.Contains(fmt.Sprint(age), "NaN") {
		t.Errorf("oldest waiting %v s", age)
	}
}

// TestRequestLogCarriesItsFields: a request's log line names its tenant,
// its stream sequence and its request id (the fields are attached lazily,
// so that a request that logs nothing pays nothing for them).
func TestRequestLogCarriesItsFields(t *testing.T) {
	t.Parallel()
	core, logs := observer.New(zap.InfoLevel)
	e := setup(t, envConfig{tenants: []string{"contoso"}, machines: 1, logger: zap.New(core)})
	c := e.collect("mde.offboard.result.>")
	ack := e.publish("mde.offboard.request.contoso",
		map[string]any{"requestId": "logged-1", "machineId": e.tenants["contoso"].machines[0].ID}, "logged-1")
	c.wait(t, 1, 10*time.Second)
	eventually(t, 5*time.Second, "the request's log line", func() bool {
		return logs.FilterMessage("request completed").Len() > 0
	})
	fields := logs.FilterMessage("request completed").All()[0].ContextMap()
	want := map[string]any{"tenant": "contoso", "request_seq": ack.Sequence, "request_id": "logged-1"}
	for k, v := range want {
		if fmt.Sprint(fields[k]) != fmt.Sprint(v) {
			t.Errorf("log field %s = %v, want %v (fields %v)", k, fields[k], v, fields)
		}
	}
	// The assignment's line names its tenant too.
	assigned := logs.FilterMessage("tenant assignment").All()
	if len(assigned) == 0 {
		t.Fatal("no tenant assignment line")
	}
	if f := assigned[0].ContextMap(); f["tenant"] != "contoso" || f["assigned"] != true {
		t.Errorf("tenant assignment fields %v, want tenant contoso, assigned true", f)
	}
}

// TestOldestWaitingCountsARequestLeftForRedelivery: a second message of a
// request id, taken while the first one's call is under way, is left for
// redelivery a minute later. Once the first is answered, nothing waits
// undelivered and nothing is in flight, yet that message is unanswered:
// the oldest waiting age counts it, as offboardctl status does, so the
// waiting alerts can fire for a request that keeps coming back.
func TestOldestWaitingCountsARequestLeftForRedelivery(t *testing.T) {
	e := setup(t, envConfig{tenants: []string{"contoso"}, machines: 1, sim: mdesim.Options{Latency: time.Second}, noStart: true})
	e.opts.StatsEvery = 100 * time.Millisecond
	e.start()
	results := e.collect("mde.offboard.result.>")
	m := e.tenants["contoso"].machines[0]
	for _, msgID := range []string{"twice-1", "twice-2"} {
		e.publish("mde.offboard.request.contoso", map[string]any{"requestId": "twice", "machineId": m.ID}, msgID)
	}
	results.wait(t, 1, 20*time.Second)
	labels := map[string]string{"tenant": "contoso", "priority": "normal"}
	eventually(t, 20*time.Second, "the message left for redelivery counted as waiting", func() bool {
		return metricValue(t, e, "mde_offboard_in_flight_requests", map[string]string{"tenant": "contoso"}) == 0 &&
			metricValue(t, e, "mde_offboard_oldest_waiting_seconds", labels) > 1
	})
	if n := metricValue(t, e, "mde_offboard_backlog_requests", labels); n != 0 {
		t.Errorf("backlog %v, want 0: the message was delivered", n)
	}
}
