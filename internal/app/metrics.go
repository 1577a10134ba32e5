package app

import (
	"errors"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"
)

// registerJournalMetrics exposes the quota journal's state. They are
// registered once per registry: a test may start several apps.
func (a *App) registerJournalMetrics() {
	shared := a.shared
	for _, c := range []prometheus.Collector{
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Namespace: "mde_offboard", Name: "quota_journal_conflicts_total",
			Help: "Quota journal writes another replica's entry came before (tried again); high values mean replicas contend for one tenant.",
		}, func() float64 { return float64(shared.Stats().Conflicts) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Namespace: "mde_offboard", Name: "quota_journal_write_failures_total",
			Help: "Quota journal writes that failed (NATS unreachable); no call is sent without its entry.",
		}, func() float64 { return float64(shared.Stats().Failures) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Namespace: "mde_offboard", Name: "quota_journal_caught_up",
			Help: "1 once this process has read the quota journal's recent calls; before that it makes no call.",
		}, func() float64 {
			if shared.CaughtUp() {
				return 1
			}
			return 0
		}),
	} {
		if err := a.reg.Register(c); err != nil {
			a.log.Warn("register quota journal metric", zap.Error(err))
		}
	}
}

// natsConnectedGauge returns mde_offboard_nats_connected, registered once
// per registry (a test may start several apps on one).
func (a *App) natsConnectedGauge() prometheus.Gauge {
	g := prometheus.NewGauge(prometheus.GaugeOpts{
		Namespace: "mde_offboard", Name: "nats_connected",
		Help: "1 while the connection to NATS is up, 0 while it is down or closed (/readyz then answers 503).",
	})
	err := a.reg.Register(g)
	var already prometheus.AlreadyRegisteredError
	switch {
	case err == nil:
	case errors.As(err, &already):
		if existing, ok := already.ExistingCollector.(prometheus.Gauge); ok {
			return existing
		}
	default:
		a.log.Warn("register the NATS connection metric", zap.Error(err))
	}
	return g
}
