package worker

import (
	"cmp"
	"context"
	"slices"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/zap"

	"github.com/contoso-secops/mde-offboard/internal/queue"
	"github.com/contoso-secops/mde-offboard/offboard"
)

// refreshWaiting sets a tenant's backlog and oldest waiting age gauges,
// and records its backlog and its requests delivered and not acked by
// priority (the last counts for a priority it could not read). The counts
// come from the tenant's source, which knows them from its pulls and
// wake-ups; the server is asked only about a priority with requests
// waiting or, at the source's last count, delivered and not acked (one
// handed back for a redelivery later is unanswered too), for the oldest
// unanswered one and the exact counts, so an idle tenant costs the stats
// loop no request. Only the stats loop calls it.
func (w *Worker) refreshWaiting(ctx context.Context, t *tenantRun) {
	if normal, bulk, err := t.source.Backlog(ctx); err == nil {
		t.backlog[offboard.Normal], t.backlog[offboard.Bulk] = normal, bulk
	}
	for _, p := range []offboard.Priority{offboard.Normal, offboard.Bulk} {
		age := 0.0
		t.unacked[p] = t.source.Unacked(p)
		if t.backlog[p] > 0 || t.unacked[p] > 0 {
			qctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			u, err := queue.Waiting(qctx, w.requests, t.source.Consumer(p))
			cancel()
			if err != nil {
				t.log.Debug("backlog", zap.Error(err))
				continue
			}
			t.backlog[p], t.unacked[p] = u.Pending, u.Unacked
			if !u.Oldest.IsZero() {
				age = max(w.clock.Since(u.Oldest).Seconds(), 0)
			}
		}
		w.m.Backlog.WithLabelValues(t.name, string(p)).Set(float64(t.backlog[p]))
		w.m.OldestWaiting.WithLabelValues(t.name, string(p)).Set(age)
	}
}

// sweepPass counts, over one pass of the stats loop, the sweeps that
// stopped at their bound with more answered requests left (queue.Sweep):
// each removed as many as a sweep may, two round trips each. Once
// sweepsFullPerPass did, the pass sweeps no more, and the sweeps due wait
// for the next pass: with many tenants each holding more than a sweep
// removes (a replica of an earlier release, which never deleted, working
// beside this one), a pass swept them all, about 0.3 s a tenant, minutes
// at a thousand, and the gauges it sets went stale meanwhile. A sweep
// that failed counts as one that stopped at its bound: with NATS away or
// slow each fails after up to its 5 s, and a pass that tried every
// tenant's took hours at a thousand.
type sweepPass struct{ full int }

// sweepsFullPerPass bounds the full sweeps of one pass: about 1,000
// requests removed, a second or two of round trips.
const sweepsFullPerPass = 5

// spent says whether the pass swept as much as it may.
func (p *sweepPass) spent() bool { return p.full >= sweepsFullPerPass }

// swept counts a sweep; more says it stopped at its bound, err that it
// failed. It returns more.
func (p *sweepPass) swept(more bool, err error) bool {
	if more || err != nil {
		p.full++
	}
	return more
}

// othersSweep is what the stats loop knows of its sweeps of the
// requests no configured tenant's consumer reads (sweepOthers): the last
// that left nothing, and when it last began one.
type othersSweep struct{ swept, tried time.Time }

// sweepSome makes the sweeps of a pass of the stats loop: of the tenants
// whose sweep is due (SweepEvery after the last that left nothing: one
// that left more goes on at the next pass), and of the requests no
// configured tenant's consumer reads, every SweepEvery from the last of
// those that left nothing, as far as the pass may sweep. Each is a turn,
// the one tried longest ago first (the unserved tenants' first of those
// tried as long ago): every tenant holding more than a sweep removes, and
// the unserved tenants', gets its turn. Before, the unserved tenants'
// came after every due tenant's, and were never swept while the tenants
// due kept a pass spent. Only the stats loop calls it.
func (w *Worker) sweepSome(ctx context.Context, others *othersSweep) {
	var pass sweepPass
	type turn struct {
		tried time.Time
		t     *tenantRun // nil: the unserved tenants'
	}
	var turns []turn
	for _, t := range w.tenants {
		if w.clock.Since(t.swept) >= w.opts.SweepEvery {
			turns = append(turns, turn{t.sweepTried, t})
		}
	}
	if w.clock.Since(others.swept) >= w.opts.SweepEvery {
		turns = append(turns, turn{others.tried, nil})
	}
	slices.SortFunc(turns, func(a, b turn) int {
		if c := a.tried.Compare(b.tried); c != 0 {
			return c
		}
		switch {
		case a.t == nil:
			return -1
		case b.t == nil:
			return 1
		}
		return cmp.Compare(a.t.name, b.t.name)
	})
	for _, u := range turns {
		if pass.spent() || ctx.Err() != nil {
			return
		}
		if u.t == nil {
			others.tried = w.clock.Now()
			if !w.sweepOthers(ctx, &pass) {
				others.swept = w.clock.Now()
			}
			continue
		}
		u.t.sweepTried = w.clock.Now()
		if !w.sweep(ctx, u.t, &pass) {
			u.t.swept = w.clock.Now()
		}
	}
}

// sweep removes the tenant's answered requests left in the request
// stream (queue.Sweep). It says whether more are left than one sweep
// removes: the stats loop sweeps again at its next pass. Only the stats
// loop calls it.
func (w *Worker) sweep(ctx context.Context, t *tenantRun, pass *sweepPass) (more bool) {
	for _, p := range []offboard.Priority{offboard.Normal, offboard.Bulk} {
		if pass.swept(w.sweepConsumer(ctx, t.log, t.source.Consumer(p), w.opts.Settings.Subjects.Request(t.name, p))) {
			more = true
		}
	}
	return more
}

// sweepOthers removes the answered requests left in the request stream
// that no configured tenant's consumer reads: those the unrouted consumer
// and the consumers of tenants no longer configured answered
// (queue.SweepUnrouted, queue.Sweep), until the pass has swept as much
// as it may. It says whether more are left, or not looked at: the stats
// loop sweeps again at its next pass. Only the stats loop calls it.
func (w *Worker) sweepOthers(ctx context.Context, pass *sweepPass) (more bool) {
	sctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	swept, more, err := queue.SweepUnrouted(sctx, w.requests, w.unknown, w.opts.Settings.Subjects)
	pass.swept(more, err)
	switch {
	case err != nil && ctx.Err() == nil:
		w.log.Warn("sweep answered requests of unserved tenants", zap.Strings("subjects_swept", swept), zap.Error(err))
	case len(swept) > 0:
		w.log.Info("removed answered requests of unserved tenants left in the request stream", zap.Strings("subjects", swept), zap.Bool("more_left", more))
	}
	for token, conss := range w.staleConsumers() {
		for _, cons := range conss {
			if pass.spent() {
				return true
			}
			p := offboard.Priority(cons.CachedInfo().Config.Metadata[queue.MetaPriority])
			if pass.swept(w.sweepConsumer(ctx, w.log.With(zap.String("tenant", token)), cons, w.opts.Settings.Subjects.Request(token, p))) {
				more = true
			}
		}
	}
	return more
}

// sweepConsumer sweeps one consumer's subject (queue.Sweep). It says
// whether more are left than one sweep removes, and the error that
// stopped it (logged here).
func (w *Worker) sweepConsumer(ctx context.Context, log *zap.Logger, cons jetstream.Consumer, subject string) (bool, error) {
	sctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	last, more, err := queue.Sweep(sctx, w.requests, cons, subject)
	switch {
	case err != nil && ctx.Err() == nil:
		// Requests removed before the error are said: the sweep is
		// not without effect.
		log.Warn("sweep answered requests", zap.String("subject", subject), zap.Uint64("removed_up_to_seq", last), zap.Error(err))
	case last > 0:
		log.Info("removed answered requests left in the request stream", zap.String("subject", subject), zap.Uint64("up_to_seq", last), zap.Bool("more_left", more))
	}
	return more, err
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
