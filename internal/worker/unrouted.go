package worker

import (
	"context"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/zap"

	"github.com/contoso-secops/mde-offboard/internal/config"
	"github.com/contoso-secops/mde-offboard/internal/mde"
	"github.com/contoso-secops/mde-offboard/internal/queue"
)

// runUnrouted reads every request through the unrouted consumer. Requests
// of configured tenants are let go at once (their tenant's consumer keeps
// them); the others are answered unknown_tenant, or invalid_request when
// the subject has no contract form, so that they do not sit in the stream.
func (w *Worker) runUnrouted(ctx context.Context) {
	log := w.log.Named("unrouted")
	for {
		batch, err := w.unknown.Fetch(256, jetstream.FetchMaxWait(w.opts.Poll))
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
			w.route(ctx, log, msg)
		}
		if ctx.Err() != nil {
			return
		}
	}
}

func (w *Worker) route(ctx context.Context, log *zap.Logger, msg jetstream.Msg) {
	s := w.opts.Settings.Subjects
	token, prio, ok := s.ParseRequest(msg.Subject())
	if _, configured := w.tenants[token]; ok && configured {
		if err := msg.Ack(); err != nil {
			log.Warn("ack routed request", zap.Error(err))
		}
		return
	}
	j := &job{msg: msg, prio: prio, received: w.clock.Now().UTC(), t: &tenantRun{name: token}}
	if meta, err := msg.Metadata(); err == nil {
		j.seq = meta.Sequence.Stream
	}
	// Best effort: keep the request id in the answer when it can be read.
	j.req, _ = parseRequest(msg.Data(), token)
	if !config.TenantName.MatchString(token) {
		j.t.name = queue.UnknownTenant
	}
	j.log = log.With(zap.String("subject", msg.Subject()), zap.Uint64("request_seq", j.seq))
	var res *Result
	if ok {
		res = j.failed(mde.CodeUnknownTenant, "tenant "+quote(token)+" is not configured in this worker", nil)
	} else {
		res = j.failed(mde.CodeInvalidRequest, "subject "+quote(msg.Subject())+" is not "+s.Request("<tenant>", queue.Normal)+"[.bulk]", nil)
	}
	res.Tenant = token
	res.CompletedAt = w.clock.Now().UTC()
	// Finish what was started even when the worker is stopping.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
	defer cancel()
	data, err := jsonMarshal(res)
	if err == nil {
		// No ledger here: the id of the answer is the request's place in
		// the stream, so a tenant configured later keeps its own ids.
		err = w.publish(ctx, j.t.name, msg, queue.ResultMsgID(j.t.name, "", j.seq), j.seq, res, data)
	}
	if err != nil {
		log.Warn("answer unrouted request", zap.Error(err))
		_ = msg.NakWithDelay(5 * time.Second)
		return
	}
	w.ack(ctx, j)
	j.log.Info("request for an unconfigured tenant answered", zap.String("code", res.Error.Code))
}
