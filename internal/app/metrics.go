package app

import (
	"errors"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"
)

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
