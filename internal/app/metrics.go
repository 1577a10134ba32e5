package app

import (
	"errors"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/contoso-secops/mde-offboard/internal/worker"
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

// certificateExpiry is mde_offboard_certificate_expiry_timestamp_seconds:
// for each tenant that signs with a certificate, when the certificate in
// use stops being valid, read at each scrape, so that a rotation shows at
// once. The login host refuses an expired certificate: every call of the
// tenant then fails, which an alert weeks before spares.
type certificateExpiry struct {
	desc    *prometheus.Desc
	tenants []*worker.Tenant
}

func newCertificateExpiry(tenants []*worker.Tenant) *certificateExpiry {
	return &certificateExpiry{
		desc: prometheus.NewDesc("mde_offboard_certificate_expiry_timestamp_seconds",
			"When the certificate a tenant's application signs with stops being valid (Unix time); tenants with a certificate only.",
			[]string{"tenant"}, nil),
		tenants: tenants,
	}
}

// Describe implements prometheus.Collector.
func (c *certificateExpiry) Describe(ch chan<- *prometheus.Desc) { ch <- c.desc }

// Collect implements prometheus.Collector.
func (c *certificateExpiry) Collect(ch chan<- prometheus.Metric) {
	for _, t := range c.tenants {
		if t.Cred == nil {
			continue
		}
		if at, ok := t.Cred.CertificateExpiry(); ok {
			ch <- prometheus.MustNewConstMetric(c.desc, prometheus.GaugeValue, float64(at.Unix()), t.Config.Name)
		}
	}
}

// registerCertificateExpiry registers the tenants' certificate ends, once
// per registry (a test may start several apps on one).
func (a *App) registerCertificateExpiry() {
	err := a.reg.Register(newCertificateExpiry(a.tenants))
	if already := (prometheus.AlreadyRegisteredError{}); err != nil && !errors.As(err, &already) {
		a.log.Warn("register the certificate expiry metric", zap.Error(err))
	}
}

// newSlowConsumersCounter is mde_offboard_nats_slow_consumers_total, not
// registered.
func newSlowConsumersCounter() prometheus.Counter {
	return prometheus.NewCounter(prometheus.CounterOpts{
		Namespace: "mde_offboard", Name: "nats_slow_consumers_total",
		Help: "Times a subscription of the worker's NATS connection fell behind and the client dropped its messages (slow consumer).",
	})
}

// slowConsumersCounter returns mde_offboard_nats_slow_consumers_total,
// registered once per registry (a test may start several apps on one).
func (a *App) slowConsumersCounter() prometheus.Counter {
	c := newSlowConsumersCounter()
	err := a.reg.Register(c)
	var already prometheus.AlreadyRegisteredError
	switch {
	case err == nil:
	case errors.As(err, &already):
		if existing, ok := already.ExistingCollector.(prometheus.Counter); ok {
			return existing
		}
	default:
		a.log.Warn("register the NATS slow consumer metric", zap.Error(err))
	}
	return c
}
