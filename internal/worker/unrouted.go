package worker

import (
	"context"
	"errors"
	"slices"
	"time"

	"github.com/jonboulle/clockwork"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/zap"

	"github.com/contoso-secops/mde-offboard/internal/queue"
	"github.com/contoso-secops/mde-offboard/offboard"
)

// Presence says which tenants live replicas serve (queue.Presence).
type Presence interface {
	// Serves is true when a live replica, this one included, serves the
	// tenant, or when that cannot be known now.
	Serves(tenant string) bool
	// Known is false while this replica's view of the others is behind
	// (NATS away, its watch being made again): no tenant can be said
	// unserved then.
	Known() bool
	// Instance marks this process: the ledger's "calling" entries carry
	// it (queue.Entry.Writer). Empty: not marked.
	Instance() string
	// Running says whether the process marked so is alive, or may be.
	Running(instance string) bool
}

// servesNone is the presence of a worker that is told nothing of other
// replicas: it answers for every tenant it does not configure.
type servesNone struct{}

func (servesNone) Serves(string) bool  { return false }
func (servesNone) Known() bool         { return true }
func (servesNone) Instance() string    { return "" }
func (servesNone) Running(string) bool { return false }

// runUnrouted reads every request through the unrouted consumer. Requests
// of tenants that this or another live replica serves are let go at once
// (the tenant's consumer keeps them), and so are those of tenants whose
// consumer is left from an earlier configuration (runStale answers them);
// the others are answered unknown_tenant, or invalid_request when the
// subject has no contract form, so that they do not sit in the stream.
// While this replica's view of the others is behind, a request of a
// tenant it does not configure comes back later: let go, it would stay in
// the stream unanswered if no replica served the tenant; answered, it
// could be a request another replica serves.
func (w *Worker) runUnrouted(ctx context.Context) {
	log := w.log.Named("unrouted")
	w.drain(ctx, log, w.unknown, func(msg jetstream.Msg) {
		token, prio, ok := w.opts.Settings.Subjects.ParseRequest(msg.Subject())
		_, configured := w.tenants[token]
		switch {
		case ok && (configured || w.isStale(token, prio)):
		case ok && !offboard.TenantName.MatchString(token):
			// No replica serves such a token and no consumer holds its
			// requests, whatever the presence says: it says yes when its
			// view fell behind after Known was asked. Let go, the request
			// would wait for nobody, and the sweep of this consumer's
			// answered requests (queue.SweepUnrouted) would delete it.
			w.answerUnrouted(ctx, log, msg)
			return
		case ok && !w.opts.Presence.Known():
			if err := msg.NakWithDelay(w.opts.Poll); err != nil {
				log.Warn("nak request while the other replicas are not known", zap.Error(err))
			}
			return
		case ok && w.opts.Presence.Serves(token):
		case !ok:
			w.answerUnrouted(ctx, log, msg)
			return
		default:
			held, err := w.heldByItsConsumer(ctx, token, prio)
			if err != nil {
				if err := msg.NakWithDelay(w.opts.Poll); err != nil {
					log.Warn("nak request whose tenant's consumer could not be looked up", zap.Error(err))
				}
				return
			}
			if !held {
				w.answerUnrouted(ctx, log, msg)
				return
			}
		}
		if err := msg.Ack(); err != nil {
			log.Warn("ack routed request", zap.Error(err))
		}
	})
}

// heldByItsConsumer says whether the tenant's consumer of priority p
// exists and holds the tenant's requests of that priority, though no live
// replica is known to serve the tenant and no consumer left from an
// earlier configuration is known here: a replica starting with the tenant
// makes its consumers before it announces itself, and this replica reads
// the announcement a moment later. That consumer may have handed the
// request to the starting replica already: answered here too, it would
// get two results, one of them for a call made. The request is the
// consumer's; the consumer is looked for as a stale one (runFindStale),
// which answers its requests while no replica serves the tenant.
func (w *Worker) heldByItsConsumer(ctx context.Context, tenant string, p offboard.Priority) (bool, error) {
	if !offboard.TenantName.MatchString(tenant) {
		return false, nil
	}
	cctx, cancel := queue.StepCtx(ctx)
	defer cancel()
	cons, err := w.opts.JS.Consumer(cctx, offboard.StreamRequests, queue.ConsumerName(tenant, p))
	if errors.Is(err, jetstream.ErrConsumerNotFound) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	cfg := cons.CachedInfo().Config
	if cfg.Metadata[queue.MetaTenant] != tenant || cfg.FilterSubject != w.opts.Settings.Subjects.Request(tenant, p) {
		return false, nil // not the worker's, or edited by hand: it does not hold the request
	}
	w.LookForStale()
	return true, nil
}

// serves says whether this or another live replica serves the tenant.
func (w *Worker) serves(tenant string) bool {
	_, configured := w.tenants[tenant]
	return configured || w.opts.Presence.Serves(tenant)
}

// isStale says whether a consumer left from an earlier configuration
// holds the tenant's requests of priority p: one that an operator has not
// removed. The unrouted consumer lets such requests go to it.
func (w *Worker) isStale(tenant string, p offboard.Priority) bool {
	name := queue.ConsumerName(tenant, p)
	w.staleMu.RLock()
	defer w.staleMu.RUnlock()
	return slices.ContainsFunc(w.stale[tenant], func(c jetstream.Consumer) bool { return c.CachedInfo().Name == name })
}

// addStale records the consumer of a tenant not configured here; it
// reports false when it was known already.
func (w *Worker) addStale(cons jetstream.Consumer) bool {
	w.staleMu.Lock()
	defer w.staleMu.Unlock()
	if w.knownStaleLocked(cons.CachedInfo().Name) {
		return false
	}
	token := cons.CachedInfo().Config.Metadata[queue.MetaTenant]
	w.stale[token] = append(w.stale[token], cons)
	return true
}

// forgetStale drops a stale consumer found removed: its requests go to
// the unrouted consumer from now on (isStale says no).
func (w *Worker) forgetStale(cons jetstream.Consumer) {
	w.staleMu.Lock()
	defer w.staleMu.Unlock()
	token, name := cons.CachedInfo().Config.Metadata[queue.MetaTenant], cons.CachedInfo().Name
	w.stale[token] = slices.DeleteFunc(w.stale[token], func(c jetstream.Consumer) bool { return c.CachedInfo().Name == name })
	if len(w.stale[token]) == 0 {
		delete(w.stale, token)
	}
}

// knownStale says whether the consumer named so is a known one of a
// tenant not configured here.
func (w *Worker) knownStale(name string) bool {
	w.staleMu.RLock()
	defer w.staleMu.RUnlock()
	return w.knownStaleLocked(name)
}

func (w *Worker) knownStaleLocked(name string) bool {
	for _, conss := range w.stale {
		for _, c := range conss {
			if c.CachedInfo().Name == name {
				return true
			}
		}
	}
	return false
}

// staleConsumers are the consumers of tenants not configured here, by
// tenant.
func (w *Worker) staleConsumers() map[string][]jetstream.Consumer {
	w.staleMu.RLock()
	defer w.staleMu.RUnlock()
	// Each list copied too: forgetStale removes from a list in place,
	// and would empty a place of the copy a caller reads.
	taken := make(map[string][]jetstream.Consumer, len(w.stale))
	for token, conss := range w.stale {
		taken[token] = slices.Clone(conss)
	}
	return taken
}

// runFindStale looks, whenever the replicas change and every SweepEvery,
// for consumers of tenants not configured here that appeared since the
// start (another replica's tenants file added the tenant), and drains
// each like those found at the start (runStale): when the last replica
// that served such a tenant leaves, its requests are answered, not left
// in the stream.
func (w *Worker) runFindStale(ctx context.Context) {
	for {
		changed := w.opts.Assignment.Changed()
		timer := w.clock.NewTimer(w.opts.SweepEvery)
		select {
		case <-ctx.Done():
			timer.Stop()
			return
		case <-changed:
		case <-timer.Chan():
		case <-w.lookForStale:
		}
		timer.Stop()
		w.findStale(ctx)
	}
}

// LookForStale asks the worker to look for consumers of tenants not
// configured here now, rather than at the next SweepEvery: consumers made
// for requests nobody reads (queue.Restore's orphans). It never blocks.
func (w *Worker) LookForStale() {
	select {
	case w.lookForStale <- struct{}{}:
	default:
	}
}

// findStale starts draining the consumers of tenants not configured here
// that it did not know of.
func (w *Worker) findStale(ctx context.Context) {
	fctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	names, err := queue.Stale(fctx, w.opts.JS, w.opts.Settings)
	if err != nil {
		if ctx.Err() == nil {
			w.log.Warn("look for consumers of tenants not configured here", zap.Error(err))
		}
		return
	}
	for _, name := range names {
		if w.knownStale(name) {
			continue
		}
		cons, err := w.opts.JS.Consumer(fctx, offboard.StreamRequests, name)
		if err != nil {
			if fctx.Err() == nil && !errors.Is(err, jetstream.ErrConsumerNotFound) {
				w.log.Warn("consumer of a tenant not configured here", zap.String("consumer", name), zap.Error(err))
			}
			continue
		}
		if _, configured := w.tenants[cons.CachedInfo().Config.Metadata[queue.MetaTenant]]; configured || !w.addStale(cons) {
			continue
		}
		w.log.Info("consumer of a tenant not configured here: its requests are answered unknown_tenant while no replica serves the tenant",
			zap.String("consumer", name))
		w.fetchers.Go(func() { w.runStale(ctx, cons) })
	}
}

// runStale answers the requests held by the consumer of a tenant that this
// replica does not serve. Deleting such a consumer would leave its
// requests unanswered (the unrouted consumer has let them go), so it is
// drained for as long as it exists; an operator removes it once it is
// empty, and from then on the unrouted consumer answers the tenant's
// requests. While another live replica serves the tenant (a rolling
// update), the consumer is that replica's: it is left alone. So it is
// while an operator has paused the tenant's priority: a pause holds its
// requests in the stream, none failed, served or not (a tenant dropped
// from the tenants files by mistake, paused until it is back), until
// the resume; and while the controls may be out of date (controlsFresh),
// as for a tenant served: a pause written while NATS was away may hold
// them.
func (w *Worker) runStale(ctx context.Context, cons jetstream.Consumer) {
	token := cons.CachedInfo().Config.Metadata[queue.MetaTenant]
	prio := stalePriority(cons.CachedInfo().Config, w.opts.Settings.Subjects)
	name := cons.CachedInfo().Name
	log := w.log.Named("stale").With(zap.String("consumer", name))
	held := func() bool { return w.serves(token) || w.opts.Control.Paused(token, prio) || !w.controlsFresh() }
	for ctx.Err() == nil {
		// Read before held reads the controls: a resume, or the controls
		// read anew, lets the drain go on at once, not after a poll.
		changed := w.opts.Control.Changed()
		if held() {
			if untilChanged(ctx, w.clock, w.opts.Poll, changed) != nil {
				return
			}
			continue
		}
		// Removed by an operator, the consumer's requests go to the
		// unrouted consumer; made again (the tenant configured again
		// somewhere), it holds them once more.
		// Forgotten once removed, it is asked for no more: a tenant
		// removed would otherwise keep this loop and its look every poll
		// for as long as the worker runs. Made again, it is found again
		// (runFindStale) and drained once more.
		if _, err := cons.Info(ctx); errors.Is(err, jetstream.ErrConsumerNotFound) {
			w.forgetStale(cons)
			log.Info("consumer of a tenant no longer configured removed: its requests are answered through the unrouted consumer")
			return
		}
		w.drainOnce(ctx, log, cons, func(msg jetstream.Msg) {
			if held() { // a replica came back meanwhile (its request), a pause landed, or NATS came back
				if err := msg.Nak(); err != nil {
					log.Warn("nak request of a served or paused tenant", zap.Error(err))
				}
				return
			}
			w.answerUnrouted(ctx, log, msg)
		})
	}
}

// untilChanged waits for d, or until changed is closed, or ctx ends (its
// error).
func untilChanged(ctx context.Context, clock clockwork.Clock, d time.Duration, changed <-chan struct{}) error {
	t := clock.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-changed:
	case <-t.Chan():
	}
	return nil
}

// stalePriority is the priority of the requests a tenant's consumer
// holds: its metadata's, or, on a consumer made by a release that did not
// record it, its subject's.
func stalePriority(cfg jetstream.ConsumerConfig, s offboard.Subjects) offboard.Priority {
	if p := offboard.Priority(cfg.Metadata[queue.MetaPriority]); p == offboard.Normal || p == offboard.Bulk {
		return p
	}
	_, p, _ := s.ParseRequest(cfg.FilterSubject)
	return p
}

// drain hands every message of a consumer to handle, in batches.
func (w *Worker) drain(ctx context.Context, log *zap.Logger, cons jetstream.Consumer, handle func(jetstream.Msg)) {
	for ctx.Err() == nil {
		w.drainOnce(ctx, log, cons, handle)
	}
}

// drainPull is how long a pull of drainOnce lasts, its client's side:
// the server is asked to end it a tenth sooner (FetchContext), and the
// client waits for that end, however slow its link to NATS up to that
// tenth. A pull given up while the server still delivers to it would drop
// its messages, to come back after their ack wait.
const drainPull = 10 * time.Second

// drainBeat is how often the server says that a pull of drainOnce is
// still waiting for messages. A pull the server dropped without a word (a
// lone server restarted, its consumer removed as the pull came, a new
// leader) is given up after two beats that did not come, and the drain
// goes round: its checks (a stale consumer removed, another replica
// serving its tenant) are not held up for a whole pull. A link to NATS
// slow enough to miss a beat (over a second there and back) would miss
// the pull's end too (drainPull's margin).
const drainBeat = time.Second

// drainOnce fetches one batch and hands each message to handle. The fetch
// ends with ctx: a stop does not wait out the pull (a message delivered to
// it meanwhile comes back after its ack wait); and when the server's beats
// stop coming (drainBeat).
func (w *Worker) drainOnce(ctx context.Context, log *zap.Logger, cons jetstream.Consumer, handle func(jetstream.Msg)) {
	fctx, cancel := context.WithTimeout(ctx, drainPull)
	defer cancel()
	batch, err := cons.Fetch(256, jetstream.FetchContext(fctx), jetstream.FetchHeartbeat(drainBeat))
	if err == nil {
		for msg := range batch.Messages() {
			handle(msg)
		}
		// A pull of a consumer that is gone, or has no leader for a
		// moment, ends at once with no responders: gone round at once,
		// the drain would pull without pause until it is back.
		if err = batch.Error(); !errors.Is(err, nats.ErrNoResponders) {
			return
		}
	}
	if ctx.Err() == nil {
		err = queue.Missing(ctx, cons, err)
		log.Warn("fetch", zap.Error(err))
		w.unroutedLost(cons, err)
		_ = sleepCtx(ctx, w.clock, time.Second)
	}
}

// unroutedLost asks for the unrouted consumer to be made again when its
// pull found it missing (deleted by hand, or lost with a lone server's
// restart and missed by the reconnect): meanwhile the requests of tenants
// nobody serves go unanswered. A stale consumer missing was removed by an
// operator: runStale sees it so, and nothing makes it again.
func (w *Worker) unroutedLost(cons jetstream.Consumer, err error) {
	if errors.Is(err, jetstream.ErrConsumerNotFound) && cons.CachedInfo().Name == queue.ConsumerUnrouted && w.opts.ConsumerLost != nil {
		w.opts.ConsumerLost()
	}
}

// answerUnrouted answers a request no live replica serves: from the ledger
// if its id has a result there (the tenant was served when the request
// came), else unknown_tenant; invalid_request for a subject of no contract
// form.
func (w *Worker) answerUnrouted(ctx context.Context, log *zap.Logger, msg jetstream.Msg) {
	s := w.opts.Settings.Subjects
	token, prio, ok := s.ParseRequest(msg.Subject())
	j := &job{msg: msg, prio: prio, received: w.clock.Now().UTC(), t: &tenantRun{name: token}}
	if meta, err := msg.Metadata(); err == nil {
		j.seq, j.stored = meta.Sequence.Stream, meta.Timestamp
	}
	j.log = log.WithLazy(zap.String("subject", offboard.Quote(msg.Subject())), zap.Uint64("request_seq", j.seq))
	// A consumer set by hand to deliver headers only hands out the
	// request without its body: read whole from the stream.
	whole, err := queue.Whole(ctx, w.opts.JS, msg)
	if err != nil {
		w.leave(j, err)
		return
	}
	j.msg, msg = whole, whole
	// Best effort: keep the checked fields in the answer.
	req, perr := offboard.ParseRequest(msg.Data(), token)
	j.req = req
	if !offboard.TenantName.MatchString(token) {
		j.t.name = queue.UnknownTenant
	}
	w.countReceived(j)
	const answered = "request of an unserved tenant answered"
	if !ok {
		w.answerSeq(ctx, j, j.failed(offboard.CodeInvalidRequest, "subject "+offboard.Quote(msg.Subject())+" is not "+s.Request("<tenant>", offboard.Normal)+"[.bulk]", nil), answered)
		return
	}
	res := j.failed(offboard.CodeUnknownTenant, "no worker serves tenant "+offboard.Quote(token), nil)
	if perr == nil && j.t.name == token && w.fromLedger(ctx, j, res) {
		return
	}
	w.answerSeq(ctx, j, res, answered)
}

// fromLedger answers a checked request of an unserved tenant from the
// ledger: a stored result is replayed, unless the request retries a failed
// one; a call under way (its replica was
// cut off mid-call) is left for later, since whether it created an action
// is not known. false: answer it res, which the ledger now holds for this
// message (claimUnrouted).
func (w *Worker) fromLedger(ctx context.Context, j *job, res *offboard.Result) bool {
	entry, err := w.opts.Ledger.Get(ctx, j.t.name, j.req.RequestID)
	switch {
	case errors.Is(err, queue.ErrUnreadable):
		// Nothing to go by, and no worker of the tenant to answer it
		// otherwise: answered unknown_tenant over it, as an id without one.
	case err != nil:
		w.leave(j, err)
		return true
	case entry == nil, entry.Unrouted && entry.Seq != j.seq:
	case entry.Retried(j.req.AttemptOrFirst()):
		// A retry of a failed request gets an answer of its own: the
		// stored one's message id would make the results stream drop it.
	case entry.Unrouted:
		// Answered so before (the ack or the delete lost): the answer
		// goes out again under the same message id.
		return false
	case entry.State == queue.StateDone:
		w.replay(ctx, j, entry)
		return true
	case entry.State == queue.StateClaimed && entry.Writer != "" && !w.opts.Presence.Running(entry.Writer) && !w.stillAtWork(ctx, j.t.name, entry):
		// A claim says no call of the id went out, and the process that
		// wrote it is gone (it stopped with the request waiting for its
		// device, its budget or its quota, or it died): nothing holds
		// the id. Left for the lease, the request of a tenant dropped
		// from the tenants files waited two hours, said to have a call
		// under way. A process that comes back to it finds the entry
		// changed: its "calling" entry is written over its claim.
	case w.clock.Since(entry.Started) < w.opts.CallingLease, w.stillAtWork(ctx, j.t.name, entry):
		// Past the lease too while the message that wrote it still works
		// on it: its answer is the id's.
		w.leaveFor(j, errCutOffMidCall, time.Minute)
		return true
	}
	return w.claimUnrouted(ctx, j, res, entry)
}

// claimUnrouted writes res over the request id's ledger entry prev (nil:
// none), as the unknown_tenant answer of this message (Entry.Unrouted),
// before the answer goes out. A replica that starts serving the tenant
// meanwhile makes the tenant's consumers, which deliver the request too
// until it is deleted: that replica's first ledger write of the id, which
// comes before any call, then fails, and it reads that the request was
// answered (Worker.answered). Likewise, an id that replica wrote first
// makes the write here fail. true: the request was left for redelivery,
// to go by the entry then. The entry keeps the offboard calls of the id
// that prev records (unroutedCalls), and their comment.
func (w *Worker) claimUnrouted(ctx context.Context, j *job, res *offboard.Result, prev *queue.Entry) bool {
	res.Tenant = j.t.name
	res.CompletedAt = w.clock.Now().UTC()
	data, err := res.Marshal()
	if err == nil {
		e := &queue.Entry{State: queue.StateDone, Seq: j.seq, Started: w.clock.Now().UTC(), Writer: w.opts.Presence.Instance(),
			Result: data, Attempt: j.req.AttemptOrFirst(), Unrouted: true, Calls: unroutedCalls(prev)}
		if e.Calls != nil {
			// The comment those calls went out with: a retry looks for
			// their action by it (Entry.Comment).
			e.Comment = prev.Comment
		}
		err = notNew(prev, w.opts.Ledger.Put(ctx, j.t.name, j.req.RequestID, prev, e))
	}
	if err != nil {
		w.leave(j, err)
		return true
	}
	return false
}

// unroutedCalls is what an unknown_tenant answer written over the ledger
// entry prev (nil: none) keeps of the offboard calls of its request id
// (Entry.Calls; nil: none known): a "calling" entry's call (a replica cut
// off mid-call, past its lease), or the calls a failed result's entry
// records (a retry of a request answered failed after calls whose action
// was not found; an earlier unknown_tenant answer that kept them). Left
// out, the message of the id worked on once the tenant is served again
// took the id for one never called, and its call, which the API takes
// once the earlier action has finished, made a second action for the
// device.
func unroutedCalls(prev *queue.Entry) *queue.EarlierCalls {
	if prev != nil && prev.State == queue.StateCalling && offboard.ValidMachineID(prev.MachineID) {
		return &queue.EarlierCalls{MachineID: prev.MachineID, ComputerDNSName: prev.ComputerDNSName, Since: prev.CalledSince()}
	}
	calls, _ := callsOfFailed(prev)
	return calls
}

// answerUnroutedAgain answers a request that a replica not serving its
// tenant answered unknown_tenant (claimUnrouted), and that the tenant's
// consumer, made meanwhile, delivered here too: that answer stands, under
// its own message id, and nothing is called.
func (w *Worker) answerUnroutedAgain(ctx context.Context, j *job, e *queue.Entry) {
	if res, ok := w.ledgerResult(ctx, j, e); ok {
		w.answerSeq(ctx, j, res, "request answered unknown_tenant before its tenant was served here")
	}
}

var errCutOffMidCall = errLeave("a call of this request may be under way, and no worker serves its tenant now")

type errLeave string

func (e errLeave) Error() string { return string(e) }

// countReceived counts a request answered apart from its tenant's
// consumers (a tenant no replica serves, a subject of no contract form, a
// status lookalike, a cancelled campaign's request read far behind others
// in its lane) in mde_offboard_requests_received_total, as handle
// counts the others: under its tenant when configured, else
// queue.UnknownTenant, and without a priority when its subject gives none.
func (w *Worker) countReceived(j *job) {
	w.m.RequestsReceived.WithLabelValues(w.metricTenant(j.t.name), string(j.prio)).Inc()
}

// answerSeq publishes the answer of a request that does not go through the
// ledger, under a message id from its place in the stream; what is logged
// once it is stored.
func (w *Worker) answerSeq(ctx context.Context, j *job, res *offboard.Result, what string) {
	res.Tenant = j.t.name
	res.CompletedAt = w.clock.Now().UTC()
	ctx, cancel := storeCtx(ctx)
	defer cancel()
	data, err := res.Marshal()
	var msgID string
	if err == nil {
		msgID, err = w.seqMsgID(ctx, j.t.name, j.msg, j.seq)
	}
	if err == nil {
		err = w.publish(ctx, j.t.name, j.msg, msgID, j.seq, res, data)
	}
	if err != nil {
		w.leave(j, err)
		return
	}
	w.ack(ctx, j)
	j.log.Info(what, zap.String("code", res.Error.Code))
}

// lookalikeReads bounds the requests one look for status lookalikes reads.
const lookalikeReads = 32

// answerLookalikes answers, invalid_request, the requests that look like
// status messages of the server (queue.StatusLookalike): no pull hands
// them over, so they are read from the request stream. Every request goes
// to the unrouted consumer, which acks the others at once, so such a
// request holds its ack floor, whatever its subject: one look there finds
// them, for every tenant. Answered by any replica, such a request gets the
// same message ids (the streams keep one answer), and its delete ends its
// delivery to every consumer (the server reports it terminated). Only the
// stats loop calls it.
func (w *Worker) answerLookalikes(ctx context.Context) {
	lctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	found, err := queue.Lookalikes(lctx, w.requests, w.unknown, w.opts.Settings.Subjects.AllRequests(), lookalikeReads)
	switch {
	case err == nil || ctx.Err() != nil:
	case queue.Outage(err) || errors.Is(err, jetstream.ErrConsumerNotFound):
		w.log.Debug("look for requests taken for status messages", zap.Error(err)) // looked at again next pass
	default:
		w.log.Warn("look for requests taken for status messages", zap.Error(err))
	}
	for _, m := range found {
		token, prio, _ := w.opts.Settings.Subjects.ParseRequest(m.Subject)
		j := &job{msg: storedRequest{m}, seq: m.Sequence, stored: m.Time, prio: prio, received: w.clock.Now().UTC(), t: &tenantRun{name: token}}
		if !offboard.TenantName.MatchString(token) {
			j.t.name = queue.UnknownTenant
		}
		w.countReceived(j)
		j.log = w.log.Named("unrouted").WithLazy(zap.String("subject", offboard.Quote(m.Subject)), zap.Uint64("request_seq", j.seq))
		res := j.failed(offboard.CodeInvalidRequest, "request has no body and a Status header: NATS clients take it for a status message of the server, never for a request", nil)
		w.answerSeq(lctx, j, res, "request taken for a status message answered")
	}
}

// storedRequest is a request read from the request stream, not delivered
// by a consumer: it has no delivery to ack, nak or extend. It is answered
// and deleted (Worker.ack); a step that fails leaves it for the next look.
type storedRequest struct{ m *jetstream.RawStreamMsg }

func (r storedRequest) Metadata() (*jetstream.MsgMetadata, error) {
	return &jetstream.MsgMetadata{Sequence: jetstream.SequencePair{Stream: r.m.Sequence}, Timestamp: r.m.Time, Stream: offboard.StreamRequests}, nil
}
func (r storedRequest) Data() []byte                   { return r.m.Data }
func (r storedRequest) Headers() nats.Header           { return r.m.Header }
func (r storedRequest) Subject() string                { return r.m.Subject }
func (storedRequest) Reply() string                    { return "" }
func (storedRequest) Ack() error                       { return nil }
func (storedRequest) DoubleAck(context.Context) error  { return nil }
func (storedRequest) Nak() error                       { return nil }
func (storedRequest) NakWithDelay(time.Duration) error { return nil }
func (storedRequest) InProgress() error                { return nil }
func (storedRequest) Term() error                      { return nil }
func (storedRequest) TermWithReason(string) error      { return nil }
