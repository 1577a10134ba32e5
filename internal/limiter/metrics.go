package limiter

import (
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
)

// JournalMetrics are a journal's metrics of one process: the quota
// journal's (NewJournalMetrics) or the budget journal's
// (NewBudgetJournalMetrics). Give them to a Shared (SharedOptions.Metrics).
type JournalMetrics struct {
	conflicts  prometheus.Counter
	failures   prometheus.Counter
	unreadable prometheus.Counter
	caughtUp   prometheus.Gauge
	// clockOffset is this process's clock minus the journal server's.
	clockOffset prometheus.Gauge
}

// NewJournalMetrics creates the quota journal's metrics and registers them
// on reg; nil registers nothing.
func NewJournalMetrics(reg prometheus.Registerer) *JournalMetrics {
	m := newJournalMetrics(reg, "quota", "no call is sent without its entry",
		"no call until the calls it may have entered have left the tenant's longest window")
	m.clockOffset = promauto.With(reg).NewGauge(prometheus.GaugeOpts{
		Namespace: "mde_offboard", Name: "clock_offset_seconds",
		Help: "How far this process's clock is ahead of the NATS server's (negative: behind), from the quota journal's timestamps; beyond half of --quota-margin the process makes no call.",
	})
	return m
}

// NewBudgetJournalMetrics creates the budget journal's metrics and
// registers them on reg; nil registers nothing. Its clock offset is the
// quota journal's to show: both are measured against the same server.
func NewBudgetJournalMetrics(reg prometheus.Registerer) *JournalMetrics {
	m := newJournalMetrics(reg, "budget", "no offboard call is sent without its budget slot",
		"held as by a spent budget until the slots it may have taken have left the budget's window")
	m.clockOffset = prometheus.NewGauge(prometheus.GaugeOpts{Name: "unregistered"})
	return m
}

// newJournalMetrics creates the metrics every journal has, named after it
// (mde_offboard_<journal>_journal_...); written and unreadable say what a
// failed write and an unreadable entry hold back.
func newJournalMetrics(reg prometheus.Registerer, journal, written, unreadable string) *JournalMetrics {
	const ns = "mde_offboard"
	f := promauto.With(reg)
	name := func(n string) string { return journal + "_journal_" + n }
	return &JournalMetrics{
		conflicts: f.NewCounter(prometheus.CounterOpts{
			Namespace: ns, Name: name("conflicts_total"),
			Help: "The " + journal + " journal's writes another replica's entry came before (tried again); high values mean replicas contend for one tenant.",
		}),
		failures: f.NewCounter(prometheus.CounterOpts{
			Namespace: ns, Name: name("write_failures_total"),
			Help: "The " + journal + " journal's writes that failed (NATS or the stream unreachable, a permission missing); " + written + ".",
		}),
		unreadable: f.NewCounter(prometheus.CounterOpts{
			Namespace: ns, Name: name("unreadable_entries_total"),
			Help: "Entries of the " + journal + " journal this process could not read, of a tenant it serves, that still hold the tenant: " + unreadable + ".",
		}),
		caughtUp: f.NewGauge(prometheus.GaugeOpts{
			Namespace: ns, Name: name("caught_up"),
			Help: "1 once this process has read the " + journal + " journal's recent entries; 0 before that, and from when it finds the journal deleted or made anew until a restart: it makes no call meanwhile.",
		}),
	}
}
