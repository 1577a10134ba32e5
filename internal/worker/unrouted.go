package worker

import (
	"context"
	"encoding/json"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/zap"

	"github.com/contoso-secops/mde-offboard/internal/config"
	"github.com/contoso-secops/mde-offboard/internal/queue"
	"github.com/contoso-secops/mde-offboard/offboard"
)

// runUnrouted reads every request through the unrouted consumer. Requests
// of configured tenants are let go at once (their tenant's consumer keeps
// them), and so are those of tenants whose consumer is left from an earlier
// configuration (runStale answers them); the others are answered
// unknown_tenant, or invalid_request when the subject has no contract form,
// so that they do not sit in the stream.
func (w *Worker) runUnrouted(ctx context.Context) {
	log := w.log.Named("unrouted")
	w.drain(ctx, log, w.unknown, func(msg jetstream.Msg) {
		token, _, ok := w.opts.Settings.Subjects.ParseRequest(msg.Subject())
		_, configured := w.tenants[token]
		_, stale := w.stale[token]
		if ok && (configured || stale) {
			if err := msg.Ack(); err != nil {
				log.Warn("ack routed request", zap.Error(err))
			}
			return
		}
		w.answerUnrouted(ctx, log, msg)
	})
}

// runStale answers every request held by the consumer of a tenant that is
// no longer configured. Deleting such a consumer would drop its requests
// unanswered (the unrouted consumer has let them go), so it is drained for
// as long as it exists; an operator removes it once it is empty.
func (w *Worker) runStale(ctx context.Context, cons jetstream.Consumer) {
	log := w.log.Named("stale").With(zap.String("consumer", cons.CachedInfo().Name))
	w.drain(ctx, log, cons, func(msg jetstream.Msg) { w.answerUnrouted(ctx, log, msg) })
}

// drain hands every message of a consumer to handle, in batches.
func (w *Worker) drain(ctx context.Context, log *zap.Logger, cons jetstream.Consumer, handle func(jetstream.Msg)) {
	for {
		batch, err := cons.Fetch(256, jetstream.FetchMaxWait(w.opts.Poll))
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			log.Warn("fetch", zap.Error(err))
			if sleepCtx(ctx, w.clock, time.Second) != nil {
				return
			}
			continue
		}
		for msg := range batch.Messages() {
			handle(msg)
		}
		if ctx.Err() != nil {
			return
		}
	}
}

// answerUnrouted answers a request no configured tenant takes:
// unknown_tenant, or invalid_request for a subject of no contract form.
func (w *Worker) answerUnrouted(ctx context.Context, log *zap.Logger, msg jetstream.Msg) {
	s := w.opts.Settings.Subjects
	token, prio, ok := s.ParseRequest(msg.Subject())
	j := &job{msg: msg, prio: prio, received: w.clock.Now().UTC(), t: &tenantRun{name: token}}
	if meta, err := msg.Metadata(); err == nil {
		j.seq = meta.Sequence.Stream
	}
	// Best effort: keep the request id in the answer when it can be read.
	j.req, _ = offboard.ParseRequest(msg.Data(), token)
	if !config.TenantName.MatchString(token) {
		j.t.name = queue.UnknownTenant
	}
	j.log = log.With(zap.String("subject", msg.Subject()), zap.Uint64("request_seq", j.seq))
	var res *offboard.Result
	if ok {
		res = j.failed(offboard.CodeUnknownTenant, "tenant "+offboard.Quote(token)+" is not configured in this worker", nil)
	} else {
		res = j.failed(offboard.CodeInvalidRequest, "subject "+offboard.Quote(msg.Subject())+" is not "+s.Request("<tenant>", offboard.Normal)+"[.bulk]", nil)
	}
	res.Tenant = token
	res.CompletedAt = w.clock.Now().UTC()
	ctx, cancel := storeCtx(ctx)
	defer cancel()
	data, err := json.Marshal(res)
	if err == nil {
		// No ledger here: the answer's id is the request's place in the
		// stream, so a tenant configured later keeps its own ids.
		err = w.publish(ctx, j.t.name, msg, w.seqMsgID(j.t.name, j.seq), j.seq, res, data)
	}
	if err != nil {
		w.leave(j, err)
		return
	}
	w.ack(ctx, j)
	j.log.Info("request for an unconfigured tenant answered", zap.String("code", res.Error.Code))
}
