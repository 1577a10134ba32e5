package app

import (
	"context"
	"time"

	"go.uber.org/zap"

	"github.com/contoso-secops/mde-offboard/internal/queue"
)

// consumerLost asks the keeper to look for the request stream's consumers
// and make again those NATS lost. It never blocks: one look answers every
// ask made before it starts.
func (a *App) consumerLost() {
	select {
	case a.lost <- struct{}{}:
	default:
	}
}

// startKeeper runs keepConsumers until Stop reaches its cleanup.
func (a *App) startKeeper(ctx context.Context) error {
	ready := make(chan struct{})
	close(ready) // nothing to wait for
	return a.runService(ctx, "consumer keeper", func(ctx context.Context) error {
		a.keepConsumers(ctx)
		return nil
	}, ready)
}

// keepConsumers makes again, at each ask (NATS reconnected, a tenant's
// fetch found its consumer gone) and every OrphanAge of the queue settings
// (a minute), the consumers the
// request stream lacks. The tenants' consumers keep their state in the
// server's memory (queue.Settings.Consumers): a lone NATS server restarted
// comes back without them, while the requests they held are still in the
// stream. The periodic look also finds requests of tenants no replica
// serves any more whose consumers were lost (queue.Restore's orphans).
func (a *App) keepConsumers(ctx context.Context) {
	var warned time.Time
	tick := time.NewTicker(a.opts.Queue.WithDefaults().OrphanAge) // real time: paces requests to NATS
	defer tick.Stop()
	for {
		asked := false
		select {
		case <-ctx.Done():
			return
		case <-a.lost:
			asked = true
		case <-tick.C:
		}
		switch {
		case !a.opts.NoSetup:
			a.restoreConsumers(ctx)
		case asked && time.Since(warned) >= time.Minute:
			warned = time.Now()
			a.log.Warn("NATS lacks consumers this worker needs, and with --no-setup the worker does not make them: apply deploy/nats again (a lone server restarted loses the tenants' consumers, which keep their state in memory)")
		}
		// Asks made meanwhile were about the same loss, and a tenant's
		// fetch asks again every second while its consumer is missing.
		select {
		case <-ctx.Done():
			return
		case <-time.After(time.Second):
		}
	}
}

// restoreConsumers makes the missing consumers, trying again every second
// for setupWait while NATS cannot take them (JetStream still starting).
func (a *App) restoreConsumers(ctx context.Context) {
	start := time.Now() // real time: bounds a wait on NATS, not logic
	for {
		made, err := queue.Restore(ctx, a.js, a.opts.Queue)
		if err == nil {
			if len(made) > 0 {
				a.log.Warn("consumers NATS had lost made again; the requests they held are delivered again, and each is answered once",
					zap.Int("consumers", len(made)), zap.Strings("names", firstNames(made, 10)))
				// Those of tenants not configured here are drained as
				// stale consumers: at once, not at the next sweep.
				a.worker.LookForStale()
			}
			return
		}
		if ctx.Err() != nil {
			return
		}
		if time.Since(start) >= setupWait {
			a.log.Error("cannot make the lost consumers again; trying at the next reconnect or failed fetch", zap.Error(err))
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(time.Second):
		}
	}
}

// firstNames is at most n of names, for a log line.
func firstNames(names []string, n int) []string {
	if len(names) > n {
		return append(names[:n:n], "...")
	}
	return names
}
