package worker

import (
	"context"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/zap"

	"github.com/contoso-secops/mde-offboard/internal/queue"
	"github.com/contoso-secops/mde-offboard/offboard"
)

// refreshWaiting sets a tenant's backlog and oldest waiting age gauges
// from its consumers, and returns the backlog by priority (last's count
// for a priority it could not read). Only the stats loop calls it.
func (w *Worker) refreshWaiting(ctx context.Context, t *tenantRun, last map[offboard.Priority]uint64) map[offboard.Priority]uint64 {
	backlog := map[offboard.Priority]uint64{}
	for _, p := range []offboard.Priority{offboard.Normal, offboard.Bulk} {
		backlog[p] = last[p]
		cons, err := w.waitingConsumer(ctx, t.name, p)
		if err != nil {
			t.log.Debug("backlog", zap.Error(err))
			continue
		}
		qctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		n, oldest, err := queue.Waiting(qctx, w.requests, cons)
		cancel()
		if err != nil {
			t.log.Debug("backlog", zap.Error(err))
			continue
		}
		backlog[p] = n
		w.m.Backlog.WithLabelValues(t.name, string(p)).Set(float64(n))
		age := 0.0
		if !oldest.IsZero() {
			age = max(w.clock.Since(oldest).Seconds(), 0)
		}
		w.m.OldestWaiting.WithLabelValues(t.name, string(p)).Set(age)
	}
	return backlog
}

// waitingConsumer returns the tenant's consumer of priority p, looked up
// once.
func (w *Worker) waitingConsumer(ctx context.Context, tenant string, p offboard.Priority) (jetstream.Consumer, error) {
	key := queue.ConsumerName(tenant, p)
	if c, ok := w.statsConsumers[key]; ok {
		return c, nil
	}
	c, err := w.opts.JS.Consumer(ctx, offboard.StreamRequests, key)
	if err != nil {
		return nil, err
	}
	if w.statsConsumers == nil {
		w.statsConsumers = map[string]jetstream.Consumer{}
	}
	w.statsConsumers[key] = c
	return c, nil
}

// observeResult records a published result's time from the request's
// publication.
func (w *Worker) observeResult(msg jetstream.Msg, res *offboard.Result) {
	meta, err := msg.Metadata()
	if err != nil || meta.Timestamp.IsZero() {
		return
	}
	prio := res.Priority
	if prio == "" {
		prio = offboard.Normal
	}
	w.m.RequestToResult.WithLabelValues(string(prio), res.Outcome).Observe(max(w.clock.Since(meta.Timestamp).Seconds(), 0))
}
