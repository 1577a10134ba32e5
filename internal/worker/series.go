package worker

import (
	"errors"
	"fmt"
	"hash/maphash"
	"maps"
	"math"
	"slices"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// The per-tenant metrics are vectors of gauges and counters of this file:
// with a thousand tenants a worker keeps tens of thousands of series. The
// library's vectors give each series label pairs of its own (about 420
// bytes a series of two labels; 26 MiB of the 83 MiB live heap at 1000
// busy tenants). Here the label pairs are shared, one for each label name
// and value in the process (a tenant's by all its series), and a series
// keeps its value and pointers to its pairs: about 130 bytes. A scrape
// allocates what it did with the library's vectors. Series are never
// deleted: their label values are bounded (Metrics).

// gaugeVec is a vector of gauges (prometheus.GaugeVec).
type gaugeVec struct{ *seriesVec }

// counterVec is a vector of counters (prometheus.CounterVec).
type counterVec struct{ *seriesVec }

// gauge is one gauge of a gaugeVec.
type gauge struct{ *series }

// counter is one counter of a counterVec.
type counter struct{ *series }

func newGaugeVec(opts prometheus.GaugeOpts, labels []string) gaugeVec {
	return gaugeVec{newSeriesVec(prometheus.Opts(opts), prometheus.GaugeValue, labels)}
}

func newCounterVec(opts prometheus.CounterOpts, labels []string) counterVec {
	return counterVec{newSeriesVec(prometheus.Opts(opts), prometheus.CounterValue, labels)}
}

// WithLabelValues returns the gauge of the label values, made at zero the
// first time.
func (v gaugeVec) WithLabelValues(values ...string) gauge { return gauge{v.with(values)} }

// WithLabelValues returns the counter of the label values, made at zero
// the first time.
func (v counterVec) WithLabelValues(values ...string) counter { return counter{v.with(values)} }

// Set sets the gauge.
func (g gauge) Set(value float64) { g.bits.Store(math.Float64bits(value)) }

// Inc adds one to the gauge.
func (g gauge) Inc() { g.add(1) }

// Dec takes one from the gauge.
func (g gauge) Dec() { g.add(-1) }

// Add adds delta to the gauge.
func (g gauge) Add(delta float64) { g.add(delta) }

// Inc adds one to the counter.
func (c counter) Inc() { c.add(1) }

// errCounterDecreases is the library's panic for a counter made smaller.
var errCounterDecreases = errors.New("counter cannot decrease in value")

// Add adds delta, which must not be negative, to the counter.
func (c counter) Add(delta float64) {
	if delta < 0 {
		panic(errCounterDecreases)
	}
	c.add(delta)
}

// seriesVec holds the series of a gaugeVec or counterVec.
type seriesVec struct {
	desc *prometheus.Desc
	kind prometheus.ValueType
	// at is where each label's pair is in a series' pairs, which are
	// sorted by name, constant labels among them.
	at      []int
	mu      sync.RWMutex
	byHash  map[uint64]*series // chained by next
	ordered []*series          // in the order they were made
}

// series is one series of a seriesVec: a prometheus.Metric, and a
// Collector of itself alone, as the library's gauges and counters are.
type series struct {
	vec     *seriesVec
	pairs   []*dto.LabelPair // shared (labelPair), sorted by name
	bits    atomic.Uint64    // the value, as math.Float64bits
	created *timestamppb.Timestamp
	next    *series // of the same hash
}

func newSeriesVec(o prometheus.Opts, kind prometheus.ValueType, labels []string) *seriesVec {
	name := prometheus.BuildFQName(o.Namespace, o.Subsystem, o.Name)
	all := slices.Sorted(maps.Keys(o.ConstLabels))
	all = append(all, labels...)
	slices.Sort(all) // as prometheus.MakeLabelPairs sorts them
	at := make([]int, len(labels))
	for i, l := range labels {
		at[i] = slices.Index(all, l)
	}
	return &seriesVec{
		desc: prometheus.NewDesc(name, o.Help, labels, o.ConstLabels),
		kind: kind, at: at, byHash: map[uint64]*series{},
	}
}

// with returns the series of the label values. Like the library, it
// panics when their number is not that of the labels or one is not UTF-8:
// label values here are configured names and fixed lists.
func (v *seriesVec) with(values []string) *series {
	if len(values) != len(v.at) {
		panic(fmt.Errorf("%s: %d label values, want %d", v.desc, len(values), len(v.at)))
	}
	h := hashValues(values)
	v.mu.RLock()
	s := v.find(h, values)
	v.mu.RUnlock()
	if s != nil {
		return s
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
	// A clone: with no variable labels the library hands out its Desc's own.
	s = &series{vec: v, pairs: slices.Clone(prometheus.MakeLabelPairs(v.desc, values)), next: v.byHash[h]}
	for i, p := range s.pairs {
		s.pairs[i] = labelPair(p.GetName(), p.GetValue())
	}
	if v.kind == prometheus.CounterValue {
		s.created = createdNow()
	}
	v.byHash[h] = s
	v.ordered = append(v.ordered, s)
	return s
}

// lastCreated is the created timestamp createdNow handed out last.
var lastCreated atomic.Pointer[timestamppb.Timestamp]

// createdNow is the created timestamp of a counter series made now. The
// series made within the same second share one, the first's: 64 bytes a
// counter series otherwise, some twenty a tenant, and a thousand
// tenants' series are made within a few seconds of the start. The others'
// is then up to a second early, which a created timestamp may be: the
// counter was 0 from then on. It is never written after it is made.
func createdNow() *timestamppb.Timestamp {
	now := time.Now()
	if c := lastCreated.Load(); c != nil && c.GetSeconds() == now.Unix() {
		return c
	}
	c := timestamppb.New(now)
	lastCreated.Store(c)
	return c
}

// find returns the series of the values among those of hash h. v.mu held.
func (v *seriesVec) find(h uint64, values []string) *series {
	for s := v.byHash[h]; s != nil; s = s.next {
		if s.is(values) {
			return s
		}
	}
	return nil
}

// is says whether the series has these label values, as many as its
// vector's labels.
func (s *series) is(values []string) bool {
	for i, at := range s.vec.at {
		if s.pairs[at].GetValue() != values[i] {
			return false
		}
	}
	return true
}

// seriesSeed seeds the hash of label values.
var seriesSeed = maphash.MakeSeed()

// hashValues hashes the values, each followed by a byte that no UTF-8
// string holds.
func hashValues(values []string) uint64 {
	var h maphash.Hash
	h.SetSeed(seriesSeed)
	for _, val := range values {
		_, _ = h.WriteString(val)
		_ = h.WriteByte(0xff)
	}
	return h.Sum64()
}

// pairs are the label pairs of the process, one for each name and value.
var pairs = struct {
	sync.Mutex
	m map[[2]string]*dto.LabelPair
}{m: map[[2]string]*dto.LabelPair{}}

// labelPair returns the process's label pair of name and value. Label
// pairs are only read once made, by the library too: a metric's own are
// handed out at every scrape, and a Desc's constant ones to all its
// metrics.
func labelPair(name, value string) *dto.LabelPair {
	pairs.Lock()
	defer pairs.Unlock()
	k := [2]string{name, value}
	p := pairs.m[k]
	if p == nil {
		p = &dto.LabelPair{Name: proto.String(name), Value: proto.String(value)}
		pairs.m[k] = p
	}
	return p
}

func (s *series) add(delta float64) {
	for {
		old := s.bits.Load()
		if s.bits.CompareAndSwap(old, math.Float64bits(math.Float64frombits(old)+delta)) {
			return
		}
	}
}

// Desc implements prometheus.Metric.
func (s *series) Desc() *prometheus.Desc { return s.vec.desc }

// Write implements prometheus.Metric.
func (s *series) Write(out *dto.Metric) error {
	out.Label = s.pairs
	value := proto.Float64(math.Float64frombits(s.bits.Load()))
	if s.vec.kind == prometheus.CounterValue {
		out.Counter = &dto.Counter{Value: value, CreatedTimestamp: s.created}
	} else {
		out.Gauge = &dto.Gauge{Value: value}
	}
	return nil
}

// Describe implements prometheus.Collector.
func (s *series) Describe(ch chan<- *prometheus.Desc) { ch <- s.vec.desc }

// Collect implements prometheus.Collector.
func (s *series) Collect(ch chan<- prometheus.Metric) { ch <- s }

// Describe implements prometheus.Collector.
func (v *seriesVec) Describe(ch chan<- *prometheus.Desc) { ch <- v.desc }

// Collect implements prometheus.Collector.
func (v *seriesVec) Collect(ch chan<- prometheus.Metric) {
	v.mu.RLock()
	all := v.ordered[:len(v.ordered):len(v.ordered)]
	v.mu.RUnlock()
	for _, s := range all {
		ch <- s
	}
}
