package worker

import (
	"bytes"
	"fmt"
	"runtime"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/common/expfmt"
)

// exposition is what a scrape of reg shows, in the text format.
func exposition(t *testing.T, reg *prometheus.Registry) string {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var b bytes.Buffer
	for _, mf := range mfs {
		if _, err := expfmt.MetricFamilyToText(&b, mf); err != nil {
			t.Fatal(err)
		}
	}
	return b.String()
}

// TestSeriesVecScrapesAsTheLibrarysVecs: the same operations on the
// library's vectors and on seriesVecs scrape the same, counters with their
// created time.
func TestSeriesVecScrapesAsTheLibrarysVecs(t *testing.T) {
	t.Parallel()
	gopts := prometheus.GaugeOpts{Namespace: "mde_offboard", Name: "backlog_requests", Help: "Requests waiting.", ConstLabels: prometheus.Labels{"zone": "a"}}
	copts := prometheus.CounterOpts{Namespace: "mde_offboard", Name: "results_total", Help: "Results."}
	libReg, ownReg := prometheus.NewRegistry(), prometheus.NewRegistry()
	libG, libC := prometheus.NewGaugeVec(gopts, []string{"tenant", "priority"}), prometheus.NewCounterVec(copts, []string{"tenant", "outcome", "code"})
	ownG, ownC := newGaugeVec(gopts, []string{"tenant", "priority"}), newCounterVec(copts, []string{"tenant", "outcome", "code"})
	libReg.MustRegister(libG, libC)
	ownReg.MustRegister(ownG, ownC)
	for _, tenant := range []string{"fabrikam", "contoso", "northwind"} {
		libG.WithLabelValues(tenant, "bulk").Set(7)
		ownG.WithLabelValues(tenant, "bulk").Set(7)
		libG.WithLabelValues(tenant, "normal").Inc()
		ownG.WithLabelValues(tenant, "normal").Inc()
		libG.WithLabelValues(tenant, "normal").Add(2.5)
		ownG.WithLabelValues(tenant, "normal").Add(2.5)
		libG.WithLabelValues(tenant, "normal").Dec()
		ownG.WithLabelValues(tenant, "normal").Dec()
		libC.WithLabelValues(tenant, "failed", "invalid_request").Add(3)
		ownC.WithLabelValues(tenant, "failed", "invalid_request").Add(3)
		libC.WithLabelValues(tenant, "created", "")
		ownC.WithLabelValues(tenant, "created", "")
	}
	if lib, own := exposition(t, libReg), exposition(t, ownReg); lib != own {
		t.Errorf("the library's vectors scrape as\n%s\nseriesVecs as\n%s", lib, own)
	}
	mfs, err := ownReg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			if c := m.GetCounter(); c != nil && c.GetCreatedTimestamp() == nil {
				t.Errorf("%s %v: no created time", mf.GetName(), m.GetLabel())
			}
		}
	}
}

// TestSeriesVecRefusesWhatTheLibraryRefuses: a wrong number of label
// values, a value that is not UTF-8, a counter made smaller.
func TestSeriesVecRefusesWhatTheLibraryRefuses(t *testing.T) {
	t.Parallel()
	v := newCounterVec(prometheus.CounterOpts{Name: "c_total", Help: "c"}, []string{"tenant", "api"})
	for name, f := range map[string]func(){
		"one value of two": func() { v.WithLabelValues("contoso") },
		"not UTF-8":        func() { v.WithLabelValues("contoso", "\xff") },
		"counter down":     func() { v.WithLabelValues("contoso", "offboard").Add(-1) },
	} {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("%s: no panic", name)
				}
			}()
			f()
		}()
	}
	if got := v.WithLabelValues("contoso", "offboard"); got != v.WithLabelValues("contoso", "offboard") {
		t.Error("the same label values gave two series")
	}
}

// heapPerSeries is the Go heap that the series made by with take, per
// series: 38 series for each of n/38 tenants, as a worker keeps.
func heapPerSeries(n int, with func(tenant, kind string)) float64 {
	tenants := make([]string, n/38)
	for i := range tenants {
		tenants[i] = fmt.Sprintf("tenant-%05d", i)
	}
	kinds := make([]string, 38)
	for i := range kinds {
		kinds[i] = fmt.Sprintf("kind-%02d", i)
	}
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	for _, tenant := range tenants {
		for _, kind := range kinds {
			with(tenant, kind)
		}
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	return float64(after.HeapAlloc-before.HeapAlloc) / float64(len(tenants)*len(kinds))
}

// TestSeriesVecIsSmall: a worker keeps 38 series per tenant; with the
// library's vectors they were a third of its live heap at 1000 busy
// tenants. Not parallel: it reads the process's heap.
func TestSeriesVecIsSmall(t *testing.T) {
	const n = 38000
	opts := prometheus.GaugeOpts{Namespace: "mde_offboard", Name: "backlog_requests", Help: "Requests waiting."}
	lib := prometheus.NewGaugeVec(opts, []string{"tenant", "kind"})
	libBytes := heapPerSeries(n, func(tenant, kind string) { lib.WithLabelValues(tenant, kind).Set(1) })
	own := newGaugeVec(opts, []string{"tenant", "kind"})
	ownBytes := heapPerSeries(n, func(tenant, kind string) { own.WithLabelValues(tenant, kind).Set(1) })
	runtime.KeepAlive(lib)
	runtime.KeepAlive(own)
	t.Logf("heap per series: the library's vector %.0f bytes, gaugeVec %.0f bytes (tenant names included)", libBytes, ownBytes)
	if ownBytes > 200 {
		t.Errorf("gaugeVec: %.0f bytes per series, want at most 200", ownBytes)
	}

	// A counter keeps its created timestamp too, shared by the series
	// made within the same second (64 bytes a series before).
	counter := newCounterVec(prometheus.CounterOpts{Namespace: "mde_offboard", Name: "results_total", Help: "Results."}, []string{"tenant", "kind"})
	counterBytes := heapPerSeries(n, func(tenant, kind string) { counter.WithLabelValues(tenant, kind).Inc() })
	runtime.KeepAlive(counter)
	t.Logf("heap per series: counterVec %.0f bytes", counterBytes)
	if counterBytes > ownBytes+32 {
		t.Errorf("counterVec: %.0f bytes per series, gaugeVec %.0f: want its created timestamp shared", counterBytes, ownBytes)
	}

	// A scrape builds no label pairs: it allocates no more than the
	// library's, which keeps them built.
	perScrape := func(c prometheus.Collector) uint64 {
		reg := prometheus.NewRegistry()
		reg.MustRegister(c)
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		if _, err := reg.Gather(); err != nil {
			t.Fatal(err)
		}
		runtime.ReadMemStats(&after)
		return after.TotalAlloc - before.TotalAlloc
	}
	libScrape, ownScrape := perScrape(lib), perScrape(own)
	t.Logf("allocated by a scrape of %d series: the library's vector %d bytes, gaugeVec %d bytes", n, libScrape, ownScrape)
	if ownScrape > libScrape*11/10 {
		t.Errorf("a scrape allocates %d bytes, the library's %d", ownScrape, libScrape)
	}
}

// TestSeriesVecLeavesItsDescAlone: a vector without variable labels gets
// its Desc's own constant label pairs from the library; sharing label
// pairs must not write into them.
func TestSeriesVecLeavesItsDescAlone(t *testing.T) {
	t.Parallel()
	v := newGaugeVec(prometheus.GaugeOpts{Name: "g", Help: "h", ConstLabels: prometheus.Labels{"zone": "desc-alone"}}, nil)
	before := prometheus.MakeLabelPairs(v.desc, nil)[0]
	v.WithLabelValues().Set(1)
	if after := prometheus.MakeLabelPairs(v.desc, nil)[0]; after != before {
		t.Error("the Desc's constant label pair was replaced")
	}
}
