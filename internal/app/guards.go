package app

import (
	"context"
	"errors"
	"strings"

	"github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/contoso-secops/mde-offboard/internal/config"
	"github.com/contoso-secops/mde-offboard/internal/queue"
)

// answerGuards answers the guards requests (offboard.Subjects.Guards) of
// this replica's tenants, each with the tenant's guards and nothing else
// of its settings: every replica that serves the tenant answers, so
// offboardctl guards can tell when they differ. One subscription for
// every tenant: a request of a tenant not served here is not answered.
func (a *App) answerGuards() error {
	// An answer larger than the server's max_payload (a tier-0 export
	// of 50,000 device ids) goes in parts, headers left room.
	limit := int(a.nc.MaxPayload()) - 1024
	log := a.log.Named("guards")
	replies := make(map[string][][]byte, len(a.tenants))
	for _, t := range a.tenants {
		data, err := config.GuardsReply(t.Config.Name, a.replicaID, &t.Config.Guards).Encode(limit)
		if err != nil {
			// A server whose max_payload is too small for one entry:
			// the tenant's guards requests go unanswered, and
			// offboardctl guards says so; the worker works on.
			log.Warn("guards requests of the tenant will not be answered", zap.String("tenant", t.Config.Name), zap.Error(err))
			continue
		}
		replies[t.Config.Name] = data
	}
	prefix := a.opts.Queue.Subjects.Guards("")
	sub, err := a.nc.Subscribe(a.opts.Queue.Subjects.AllGuards(), func(m *nats.Msg) {
		data, ok := replies[strings.TrimPrefix(m.Subject, prefix)]
		if !ok || m.Reply == "" {
			return
		}
		if taken := queue.Reserved(a.opts.Queue.Subjects.Prefix, m.Reply); taken != "" {
			// Answered there, the reply would land where only the
			// worker publishes, or be taken for a JetStream request.
			log.Warn("guards request not answered: its reply subject is not an inbox", zap.String("under", taken))
			return
		}
		for _, part := range data {
			if err := m.Respond(part); err != nil {
				log.Warn("answer a guards request", zap.Error(err))
				return
			}
		}
	})
	if err != nil {
		return err
	}
	a.life.add("guards answers", func(context.Context) error { return sub.Unsubscribe() })
	return nil
}

// guardsDisagree is mde_offboard_guards_disagree: for each tenant, how
// many other live replicas serve it with other guards than this one's
// (their announced digests differ), read at each scrape; 0 until the
// presence is started.
type guardsDisagree struct {
	desc *prometheus.Desc
	a    *App
}

// Describe implements prometheus.Collector.
func (c *guardsDisagree) Describe(ch chan<- *prometheus.Desc) { ch <- c.desc }

// Collect implements prometheus.Collector.
func (c *guardsDisagree) Collect(ch chan<- prometheus.Metric) {
	p := c.a.presence.Load()
	for _, t := range c.a.tenants {
		n := 0
		if p != nil {
			n = len(p.GuardsDiffer(t.Config.Name))
		}
		ch <- prometheus.MustNewConstMetric(c.desc, prometheus.GaugeValue, float64(n), t.Config.Name)
	}
}

// registerGuardsDisagree registers mde_offboard_guards_disagree, once
// per registry (a test may start several apps on one).
func (a *App) registerGuardsDisagree() {
	err := a.reg.Register(&guardsDisagree{a: a, desc: prometheus.NewDesc("mde_offboard_guards_disagree",
		"Other live replicas that serve the tenant with other guards (protect, requireInactiveFor, budget) than this replica's tenants file: "+
			"a request one of them takes may offboard a device this replica protects. 0: they agree.",
		[]string{"tenant"}, nil)})
	if already := (prometheus.AlreadyRegisteredError{}); err != nil && !errors.As(err, &already) {
		a.log.Warn("register the guards disagreement metric", zap.Error(err))
	}
}
