package worker

import (
	"errors"
	"fmt"
	"math"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/prometheus/client_golang/prometheus"
)

// seriesVec is a vector of gauges or counters for the series a worker
// keeps per tenant: with a thousand tenants, tens of thousands of them.
// The library's vectors keep every series ready to be scraped, its label
// pairs built: about 700 bytes a series, 26 MiB at 1000 tenants. A
// seriesVec keeps the label values and the value (about 100 bytes) and
// builds each series when scraped. Series are never deleted: their label
// values are bounded (Metrics).
type seriesVec struct {
	desc    *prometheus.Desc
	kind    prometheus.ValueType
	labels  int
	mu      sync.RWMutex
	byHash  map[uint64][]*series
	ordered []*series // in the order they were made
}

// series is one series of a seriesVec. It is a Collector of itself alone,
// as the library's gauges and counters are.
type series struct {
	vec     *seriesVec
	values  []string
	bits    atomic.Uint64 // the value, as math.Float64bits
	created time.Time     // counters: when it was made
}

func newGaugeVec(opts prometheus.GaugeOpts, labels []string) *seriesVec {
	return newSeriesVec(prometheus.Opts(opts), prometheus.GaugeValue, labels)
}

func newCounterVec(opts prometheus.CounterOpts, labels []string) *seriesVec {
	return newSeriesVec(prometheus.Opts(opts), prometheus.CounterValue, labels)
}

func newSeriesVec(o prometheus.Opts, kind prometheus.ValueType, labels []string) *seriesVec {
	name := prometheus.BuildFQName(o.Namespace, o.Subsystem, o.Name)
	return &seriesVec{
		desc: prometheus.NewDesc(name, o.Help, labels, o.ConstLabels),
		kind: kind, labels: len(labels), byHash: map[uint64][]*series{},
	}
}

// WithLabelValues returns the series of the label values, made at zero
// the first time. Like the library's, it panics when their number is not
// that of the labels or one is not UTF-8: label values here are
// configured names and fixed lists.
func (v *seriesVec) WithLabelValues(values ...string) *series {
	h := hashValues(values)
	v.mu.RLock()
	s := v.find(h, values)
	v.mu.RUnlock()
	if s != nil {
		return s
	}
	if len(values) != v.labels {
		panic(fmt.Errorf("%s: %d label values, want %d", v.desc, len(values), v.labels))
	}
	for _, val := range values {
		if !utf8.ValidString(val) {
			panic(fmt.Errorf("%s: label value %q is not valid UTF-8", v.desc, val))
		}
	}
	v.mu.Lock()
	defer v.mu.Unlock()
	if s := v.find(h, values); s != nil {
		return s
	}
	s = &series{vec: v, values: append([]string(nil), values...)}
	if v.kind == prometheus.CounterValue {
		s.created = time.Now()
	}
	v.byHash[h] = append(v.byHash[h], s)
	v.ordered = append(v.ordered, s)
	return s
}

// find returns the series of the values among those of hash h. v.mu held.
func (v *seriesVec) find(h uint64, values []string) *series {
	for _, s := range v.byHash[h] {
		if equalValues(s.values, values) {
			return s
		}
	}
	return nil
}

func equalValues(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// hashValues is FNV-1a over the values, each followed by a separator that
// no UTF-8 string holds.
func hashValues(values []string) uint64 {
	const offset, prime = 14695981039346656037, 1099511628211
	h := uint64(offset)
	for _, val := range values {
		for i := 0; i < len(val); i++ {
			h ^= uint64(val[i])
			h *= prime
		}
		h ^= 0xff
		h *= prime
	}
	return h
}

// Describe implements prometheus.Collector.
func (v *seriesVec) Describe(ch chan<- *prometheus.Desc) { ch <- v.desc }

// Collect implements prometheus.Collector.
func (v *seriesVec) Collect(ch chan<- prometheus.Metric) {
	v.mu.RLock()
	all := v.ordered[:len(v.ordered):len(v.ordered)]
	v.mu.RUnlock()
	for _, s := range all {
		ch <- s.metric()
	}
}

// metric is the series as scraped now.
func (s *series) metric() prometheus.Metric {
	value := math.Float64frombits(s.bits.Load())
	if s.vec.kind == prometheus.CounterValue {
		return prometheus.MustNewConstMetricWithCreatedTimestamp(s.vec.desc, s.vec.kind, value, s.created, s.values...)
	}
	return prometheus.MustNewConstMetric(s.vec.desc, s.vec.kind, value, s.values...)
}

// Describe implements prometheus.Collector.
func (s *series) Describe(ch chan<- *prometheus.Desc) { ch <- s.vec.desc }

// Collect implements prometheus.Collector.
func (s *series) Collect(ch chan<- prometheus.Metric) { ch <- s.metric() }

// Set sets a gauge.
func (s *series) Set(value float64) { s.bits.Store(math.Float64bits(value)) }

// Inc adds one.
func (s *series) Inc() { s.Add(1) }

// Dec takes one away from a gauge.
func (s *series) Dec() { s.Add(-1) }

// errCounterDecreases is the library's panic for a counter made smaller.
var errCounterDecreases = errors.New("counter cannot decrease in value")

// Add adds delta; a counter's must not be negative.
func (s *series) Add(delta float64) {
	if delta < 0 && s.vec.kind == prometheus.CounterValue {
		panic(errCounterDecreases)
	}
	for {
		old := s.bits.Load()
		if s.bits.CompareAndSwap(old, math.Float64bits(math.Float64frombits(old)+delta)) {
			return
		}
	}
}
