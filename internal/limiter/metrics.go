package limiter

import (
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
)

// JournalMetrics are the quota journal's metrics of one process. Give
// them to a Shared (SharedOptions.Metrics).
type JournalMetrics struct {
	conflicts prometheus.Counter
	failures  prometheus.Counter
	caughtUp  prometheus.Gauge
	// clockOffset is this process's clock minus the journal server's.
	clockOffset prometheus.Gauge
}

// NewJournalMetrics creates the journal's metrics and registers them on
// reg; nil registers nothing.
func NewJournalMetrics(reg prometheus.Registerer) *JournalMetrics {
	const ns = "mde_offboard"
	f := promauto.With(reg)
	return &JournalMetrics{
		conflicts: f.NewCounter(prometheus.CounterOpts{
			Namespace: ns, Name: "quota_journal_conflicts_total",
			Help: "Quota journal writes another replica's entry came before (tried again); high values mean replicas contend for one tenant.",
		}),
		failures: f.NewCounter(prometheus.CounterOpts{
			Namespace: ns, Name: "quota_journal_write_failures_total",
			Help: "Quota journal writes that failed (NATS unreachable); no call is sent without its entry.",
		}),
		caughtUp: f.NewGauge(prometheus.GaugeOpts{
			Namespace: ns, Name: "quota_journal_caught_up",
			Help: "1 once this process has read the quota journal's recent calls; before that it makes no call.",
		}),
		clockOffset: f.NewGauge(prometheus.GaugeOpts{
			Namespace: ns, Name: "clock_offset_seconds",
			Help: "How far this process's clock is ahead of the NATS server's (negative: behind), from the quota journal's timestamps; beyond --quota-margin the process makes no call.",
		}),
	}
}
