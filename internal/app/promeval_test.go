package app

import (
	"context"
	"math"
	"slices"
	"sort"
	"strconv"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/prometheus/model/histogram"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/promql"
	"github.com/prometheus/prometheus/storage"
	"github.com/prometheus/prometheus/tsdb/chunkenc"
	"github.com/prometheus/prometheus/tsdb/chunks"
	"github.com/prometheus/prometheus/util/annotations"

	"github.com/contoso-secops/mde-offboard/deploy"
)

// scraped is what Prometheus stores of a replica's scrapes: each scrape's
// samples at the time the test gives it, with the labels job and
// instance added and up = 1, as the ServiceMonitor's job
// "mde-offboard" stores them. Alert expressions evaluated over it with
// Prometheus' own query engine meet what a real worker exposes: series
// made at zero at the start, and series that appear with their first
// event.
type scraped struct {
	series map[string]*scrapedSeries // by the labels' string
}

type scrapedSeries struct {
	lset    labels.Labels
	samples []chunks.Sample
}

// scrapeAt reads the /metrics of e's worker and stores it as scraped at.
func (s *scraped) scrapeAt(t *testing.T, e *env, at time.Time) {
	t.Helper()
	s.scrapeOf(t, e.app, "10.0.0.1:9090", at)
}

// scrapeOf reads a's /metrics and stores it as instance's, scraped at.
func (s *scraped) scrapeOf(t *testing.T, a *App, instance string, at time.Time) {
	t.Helper()
	if s.series == nil {
		s.series = map[string]*scrapedSeries{}
	}
	ts := at.UnixMilli()
	s.add(labels.FromStrings("__name__", "up", "job", "mde-offboard", "instance", instance), ts, 1)
	for name, mf := range scrapeApp(t, a) {
		for _, m := range mf.GetMetric() {
			b := labels.NewBuilder(labels.EmptyLabels())
			b.Set("job", "mde-offboard")
			b.Set("instance", instance)
			for _, lp := range m.GetLabel() {
				b.Set(lp.GetName(), lp.GetValue())
			}
			with := func(metric string, v float64, extra ...string) {
				b := labels.NewBuilder(b.Labels())
				b.Set("__name__", metric)
				for i := 0; i+1 < len(extra); i += 2 {
					b.Set(extra[i], extra[i+1])
				}
				s.add(b.Labels(), ts, v)
			}
			switch mf.GetType() {
			case dto.MetricType_COUNTER:
				with(name, m.GetCounter().GetValue())
			case dto.MetricType_GAUGE:
				with(name, m.GetGauge().GetValue())
			case dto.MetricType_UNTYPED:
				with(name, m.GetUntyped().GetValue())
			case dto.MetricType_HISTOGRAM:
				h := m.GetHistogram()
				for _, bk := range h.GetBucket() {
					with(name+"_bucket", float64(bk.GetCumulativeCount()), "le", formatLE(bk.GetUpperBound()))
				}
				with(name+"_bucket", float64(h.GetSampleCount()), "le", "+Inf")
				with(name+"_sum", h.GetSampleSum())
				with(name+"_count", float64(h.GetSampleCount()))
			}
		}
	}
}

// formatLE writes a bucket's bound as the text format does.
func formatLE(v float64) string {
	if math.IsInf(v, 1) {
		return "+Inf"
	}
	return strconv.FormatFloat(v, 'g', -1, 64)
}

func (s *scraped) add(lset labels.Labels, ts int64, v float64) {
	key := lset.String()
	se := s.series[key]
	if se == nil {
		se = &scrapedSeries{lset: lset}
		s.series[key] = se
	}
	se.samples = append(se.samples, floatSample{t: ts, f: v})
}

// eval evaluates expr at at, and returns the series it gives.
func (s *scraped) eval(t *testing.T, expr string, at time.Time) promql.Vector {
	t.Helper()
	eng := promql.NewEngine(promql.EngineOpts{MaxSamples: 1_000_000, Timeout: time.Minute, LookbackDelta: 5 * time.Minute})
	q, err := eng.NewInstantQuery(t.Context(), s, nil, expr, at)
	if err != nil {
		t.Fatalf("%s: %v", expr, err)
	}
	defer q.Close()
	res := q.Exec(t.Context())
	if res.Err != nil {
		t.Fatalf("%s: %v", expr, res.Err)
	}
	v, err := res.Vector()
	if err != nil {
		t.Fatalf("%s: %v", expr, err)
	}
	return v
}

// alertExpr is the expression of the alert named so in deploy's rule files.
func alertExpr(t *testing.T, alert string) string {
	t.Helper()
	files, err := deploy.Rules()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range files {
		for _, g := range f.Groups {
			for _, r := range g.Rules {
				if r.Alert == alert {
					return r.Expr
				}
			}
		}
	}
	t.Fatalf("no alert %s in the rule files", alert)
	return ""
}

// Querier: the scraped series, every sample of each (the engine reads
// the window it needs).
func (s *scraped) Querier(int64, int64) (storage.Querier, error) { return s, nil }

func (s *scraped) Select(_ context.Context, _ bool, _ *storage.SelectHints, ms ...*labels.Matcher) storage.SeriesSet {
	var out []storage.Series
	for _, se := range s.series {
		match := true
		for _, m := range ms {
			if !m.Matches(se.lset.Get(m.Name)) {
				match = false
				break
			}
		}
		if match {
			out = append(out, storage.NewListSeries(se.lset, slices.Clone(se.samples)))
		}
	}
	sort.Slice(out, func(i, j int) bool { return labels.Compare(out[i].Labels(), out[j].Labels()) < 0 })
	return &seriesList{list: out, i: -1}
}

func (*scraped) LabelValues(context.Context, string, *storage.LabelHints, ...*labels.Matcher) ([]string, annotations.Annotations, error) {
	return nil, nil, nil
}

func (*scraped) LabelNames(context.Context, *storage.LabelHints, ...*labels.Matcher) ([]string, annotations.Annotations, error) {
	return nil, nil, nil
}

func (*scraped) Close() error { return nil }

type seriesList struct {
	list []storage.Series
	i    int
}

func (l *seriesList) Next() bool                      { l.i++; return l.i < len(l.list) }
func (l *seriesList) At() storage.Series              { return l.list[l.i] }
func (*seriesList) Err() error                        { return nil }
func (*seriesList) Warnings() annotations.Annotations { return nil }

// floatSample is one float sample (chunks.Sample).
type floatSample struct {
	t int64
	f float64
}

func (s floatSample) T() int64                    { return s.t }
func (floatSample) ST() int64                     { return 0 }
func (s floatSample) F() float64                  { return s.f }
func (floatSample) H() *histogram.Histogram       { return nil }
func (floatSample) FH() *histogram.FloatHistogram { return nil }
func (floatSample) Type() chunkenc.ValueType      { return chunkenc.ValFloat }
func (s floatSample) Copy() chunks.Sample         { return s }
