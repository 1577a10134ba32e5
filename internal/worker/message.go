package worker

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"runtime/debug"
	"slices"
	"sync"
	"time"

	"github.com/jonboulle/clockwork"
	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/zap"

	"github.com/contoso-secops/mde-offboard/internal/limiter"
	"github.com/contoso-secops/mde-offboard/internal/mde"
	"github.com/contoso-secops/mde-offboard/internal/queue"
	"github.com/contoso-secops/mde-offboard/offboard"
)

// This file is a request's message lifecycle: taken from the stream,
// checked, answered from the ledger or worked on (steps.go), its result
// stored and published, and only then acked.

// job is one request being worked on.
type job struct {
	t        *tenantRun
	msg      jetstream.Msg
	seq      uint64
	unmarked bool // its mark as under way cleared (unmark)
	prio     offboard.Priority
	req      offboard.Request
	received time.Time
	// stored is when the server stored the request in the request stream
	// (zero: not known). A first attempt that has the form of a cancelled
	// campaign's ids is that campaign's only if it came before the cancel.
	stored time.Time
	// delivered is how many times JetStream has delivered the message,
	// this time included (0: not known).
	delivered uint64
	attempts  int
	// throttled counts the offboard attempts sent and answered 429: the
	// API turned them away before acting on them.
	throttled int
	// mayHaveActed says that an offboard attempt of this message may have
	// created an action: it was answered with success, or its answer was
	// lost (a 5xx, a timeout). A 429 or a refusal created none.
	mayHaveActed bool
	// pendingMayBeOwn says that the request is answered already_pending
	// with an unfinished action that may be the one such an attempt
	// created (existingAction): nothing shows it is another's, as its
	// comment or creation time may be missing. Its budget slot counts.
	pendingMayBeOwn bool
	// lostAt is when the last offboard attempt of this message whose
	// answer was lost (a 5xx, a timeout) ended (zero: none). lostSince
	// bounds the look for its action (the "calling" entry's start), and
	// lostLookedAt is when it was last looked for and not found.
	lostAt, lostSince, lostLookedAt time.Time
	// budgetSlot says that the request holds a slot of its tenant's
	// budget for its offboard call (reserveBudget): none is taken while
	// the tenant has no budget.
	budgetSlot bool
	// slotDue is when that slot's lease in the budget journal runs out
	// (zero: no slot, or no journal): other replicas count the slot as a
	// creation then, and ignore an end written later.
	slotDue time.Time
	// earlierCall is when the request id's ledger entry, as this message
	// read it, says a call for its device was about to go out (zero: it
	// does not): one of an earlier delivery, or of a replica that stopped.
	earlierCall time.Time
	// earlierSince bounds the look for that call's action (Entry.Since),
	// and lookedAt is when it was last looked for (zero: not yet).
	earlierSince, lookedAt time.Time
	// earlierCalls counts the calls of earlier deliveries known to have
	// gone out: 1 once their action was found (lookForEarlier).
	earlierCalls int
	// earlierComment is the comment the earlier call went out with, as
	// its entry says (empty: not known, the request's own is taken).
	earlierComment string
	// entryGone says that this delivery, not the message's first, found
	// no ledger entry for its request id: one an earlier delivery wrote
	// may be gone (the bucket purged, the entry deleted or expired), and
	// with it what it said of a call of the request (process).
	entryGone bool
	log       *zap.Logger
	// checked is set once the request passed its checks: from then on its
	// id is used in the ledger and in the result's message id.
	checked bool
	// entry is the request id's ledger entry as this job last read or
	// wrote it (nil: none); the result is written over it.
	entry *queue.Entry
	// wroteCalling says that this delivery wrote a "calling" entry for
	// its request id (calling, stillCalling): entry, while still in that
	// state, is this delivery's own.
	wroteCalling bool
	// stopAlive stops the in-progress ticks; called before the ack or nak,
	// so that a late tick cannot undo a nak's delay.
	stopAlive func()
	// free moves the request from its in-flight slot to a finishing one
	// (more than once is fine). The in-flight slots bound the calls under
	// way: a request whose calls are over frees its slot before its
	// result is stored, so storing results and acking, which takes as
	// long as the call itself, does not hold up the tenant's next call;
	// as many finishing slots bound those being stored.
	free func()
}

// handle works one request to its result. permit is an offboard permit
// taken as the request was pulled, or nil (its call waits for one);
// handle spends or releases it. free gives its in-flight slot back once
// its API calls are over.
func (w *Worker) handle(ctx context.Context, t *tenantRun, msg jetstream.Msg, prio offboard.Priority, permit *limiter.Permit, free func()) {
	w.m.InFlight.WithLabelValues(t.name).Inc()
	defer w.m.InFlight.WithLabelValues(t.name).Dec()
	w.m.RequestsReceived.WithLabelValues(t.name, string(prio)).Inc()
	if permit != nil {
		defer permit.Release() // no-op once spent
	}

	j := w.newJob(t, msg, prio)
	j.free = free
	// A redelivery of a request this process is still working on (its ack
	// wait ran out) is left to the first delivery, which will ack it.
	if !j.mark() {
		j.log.Debug("redelivery of a request under way: left to the first delivery")
		return
	}
	defer j.unmark()
	j.stopAlive = w.keepAlive(j)
	defer j.stopAlive()
	defer func() {
		if r := recover(); r != nil {
			j.log.Error("request handling panicked", zap.Any("panic", r), zap.ByteString("stack", debug.Stack()))
			w.finish(ctx, j, j.failed(offboard.CodeInternal, "the worker met an internal error; see its log", nil))
		}
	}()
	// A consumer set by hand to deliver headers only hands out the
	// request without its body: read whole from the stream.
	whole, err := queue.Whole(ctx, w.opts.JS, msg)
	if err != nil {
		w.leave(j, err)
		return
	}
	j.msg = whole
	req, err := offboard.ParseRequest(whole.Data(), t.name)
	if err == nil {
		// By the time the worker took it: a request that waited is
		// not refused for a time its publisher's clock gave.
		if err = req.CheckTime(j.received); err != nil {
			req.NotSeenSince = time.Time{} // not echoed: it failed its check
		}
	}
	j.req = req
	j.log = j.log.WithLazy(zap.String("request_id", req.RequestID))
	if err != nil {
		w.finish(ctx, j, j.failed(offboard.CodeInvalidRequest, err.Error(), nil))
		return
	}
	j.checked = true
	if w.answered(ctx, j) {
		return
	}
	res, err := w.process(ctx, j, permit)
	if err != nil {
		w.leave(j, err)
		return
	}
	w.finish(ctx, j, res)
}

func (w *Worker) newJob(t *tenantRun, msg jetstream.Msg, prio offboard.Priority) *job {
	j := &job{t: t, msg: msg, prio: prio, received: w.clock.Now().UTC()}
	if meta, err := msg.Metadata(); err == nil {
		j.seq, j.delivered, j.stored = meta.Sequence.Stream, meta.NumDelivered, meta.Timestamp
	}
	j.log = t.log.WithLazy(zap.Uint64("request_seq", j.seq))
	return j
}

// answered consults the ledger: a request id that has its result is
// answered from it, unless the result is failed and the request a later
// attempt (a retry: worked on again); one that another message is working
// on right now is left for later. A request of a cancelled campaign that
// no call was made for is answered cancelled. false: work on the request.
//
// A fresh request costs the ledger nothing here (see fresh).
func (w *Worker) answered(ctx context.Context, j *job) bool {
	if j.fresh() {
		return w.withdrawn(ctx, j)
	}
	claimed, err := w.claim(ctx, j)
	if err != nil {
		w.leave(j, err)
		return true
	}
	if claimed {
		// A delivery after the first whose id had no entry: an earlier
		// delivery's entry may be gone (the bucket purged, the entry
		// deleted or expired) after its result went out, or after its
		// call.
		j.entryGone = j.delivered > 1 && !j.t.uncalled.next(j.seq, j.delivered)
		if !j.entryGone {
			return w.withdrawn(ctx, j)
		}
		// A cancel of its campaign is applied once the look for an
		// earlier call's action found none (process): answered
		// cancelled here, the request hid the action that call made.
		return w.answeredBefore(ctx, j)
	}
	if !w.readEntry(ctx, j) {
		return true
	}
	entry := j.entry
	switch {
	case entry == nil:
	case entry.Unrouted && entry.Seq == j.seq:
		// Answered unknown_tenant by a replica that knew of none serving
		// the tenant, before this one's consumer delivered it.
		w.answerUnroutedAgain(ctx, j, entry)
		return true
	case entry.Unrouted:
		// Another message of the id, answered unknown_tenant before the
		// tenant was served: this one is worked on, over that entry.
	case entry.State == queue.StateClaimed && (entry.Seq == j.seq || w.clock.Since(entry.Started) >= w.opts.CallingLease):
		// This message's own claim (it was left before its call), or one
		// whose message is long gone: no call was sent; the entry is
		// written over.
	case entry.State == queue.StateDone && !entry.Retried(j.req.AttemptOrFirst()):
		w.replay(ctx, j, entry)
		return true
	case entry.State == queue.StateDone:
		j.log.Info("failed request retried", zap.Int("attempt", j.req.AttemptOrFirst()), zap.Int("stored_attempt", entry.StoredAttempt()))
	case entry.Seq != j.seq && w.clock.Since(entry.Started) < w.opts.CallingLease:
		// Another message with this id is being worked on right now; come
		// back when it has its result, and answer from the ledger then.
		w.leaveFor(j, fmt.Errorf("request id is being worked on by request %d", entry.Seq), time.Minute)
		return true
	case entry.State == queue.StateCalling && entry.Seq != j.seq && w.stillAtWork(ctx, j.t.name, entry):
		// Past the lease, the message that called still works on it (its
		// look for its action held by 429s, say): taken up here too, the
		// id could get two different answers.
		w.leaveFor(j, fmt.Errorf("request id is being worked on by request %d, past its calling lease", entry.Seq), time.Minute)
		return true
	case entry.State == queue.StateCalling && entry.Seq == j.seq:
		if wait := w.callElsewhere(ctx, j, entry); wait > 0 {
			w.leaveFor(j, errCallUnderWay, wait)
			return true
		}
		return false // a call cut off, as below
	default:
		// A call of this id may have been sent (a crash): it is under
		// way, and its action is its answer whatever a cancel says;
		// after a cancel, no call of it goes out again (beforeCall).
		return false
	}
	return w.withdrawn(ctx, j)
}

// answeredBefore answers a request delivered again whose id had no entry
// in the ledger (its claim created one) from the result already published
// for it, if there is one: an earlier delivery stored and published its
// result and was not acked (it died, its ack was lost), and the entry is
// gone since (the bucket purged, the entry deleted or expired). Taken for
// a new request, it called the device again, and the ledger stored that
// call's answer (already_pending, say) where the published result said
// created. The published result is stored in the ledger over the claim,
// and the request is answered from it (replay), as from any entry. A
// first delivery does not look: most requests are new, and the look
// reads the tenant's results since the request was stored. false: no
// result is out, or none could be read; the request is worked on, looking
// for an earlier call's action first. true also when it was left.
func (w *Worker) answeredBefore(ctx context.Context, j *job) bool {
	if w.opts.JS == nil || j.stored.IsZero() {
		return false
	}
	msgID := offboard.ResultMsgID(j.t.name, j.req.RequestID, j.req.AttemptOrFirst())
	lctx, cancel := storeCtx(ctx)
	defer cancel()
	// Results are stamped by the results stream's server, the request by
	// the request stream's: their clocks may differ.
	data, err := queue.PublishedResult(lctx, w.opts.JS, w.opts.Settings.Subjects.Result(j.t.name), msgID, j.stored.Add(-clockSkew))
	if err != nil {
		// Not a reason to leave: a user that may not read the results
		// stream (a --no-setup deployment narrowed to what an earlier
		// release needed) failed this look at every delivery, and the
		// request was never answered. The look for an earlier call's
		// action (process) still keeps the device from a second one.
		j.log.Warn("the results published for a request delivered again without a ledger entry could not be read: its earlier call's action is looked for instead", zap.Error(err))
		return false
	}
	if data == nil {
		return false
	}
	var res offboard.Result
	if err := json.Unmarshal(data, &res); err != nil || res.RequestID != j.req.RequestID {
		j.log.Warn("a result under the request's message id is not its result: not taken as its answer", zap.String("msg_id", msgID), zap.Error(err))
		return false
	}
	seq := res.RequestSeq
	if seq == 0 {
		seq = j.seq
	}
	e := &queue.Entry{State: queue.StateDone, Seq: seq, Result: data}
	e.Attempt = e.StoredAttempt()
	if err := w.opts.Ledger.Put(ctx, j.t.name, j.req.RequestID, j.entry, e); err != nil {
		w.leave(j, err)
		return true
	}
	j.entry = e
	j.log.Warn("the request was answered before, and its ledger entry is gone (bucket purged, entry deleted or expired): answered from its published result, stored in the ledger again")
	w.replay(ctx, j, e)
	return true
}

// readEntry reads the request id's ledger entry into j.entry. false: the
// request was answered (an entry that cannot be read) or left.
func (w *Worker) readEntry(ctx context.Context, j *job) bool {
	entry, err := w.opts.Ledger.Get(ctx, j.t.name, j.req.RequestID)
	j.entry = entry
	switch {
	case errors.Is(err, queue.ErrUnreadable):
		w.unreadableEntry(ctx, j, err)
		return false
	case err != nil:
		w.leave(j, err)
		return false
	}
	return true
}

// fresh says whether the request is taken to be new without a claim: its
// first delivery, its first attempt, and nothing to call before the
// offboard call (a machine id, no dry run, no guard or notSeenSince that
// reads the device). Nearly every such request is new. Its first ledger write, the
// "calling" entry before its call or its result, creates the id's entry,
// and fails if the id has one after all (the same request id sent again
// as a new message, a consumer made again): then nothing was sent, the
// quota and budget slots taken for the call are given back, and the
// request comes back at once (leave) to be claimed like any redelivery.
// A request that reads the API first is claimed, so that a request id
// already answered spends no read; a fresh request that must wait is
// claimed before it waits (claimBeforeWaiting).
func (j *job) fresh() bool {
	return j.delivered == 1 && j.req.AttemptOrFirst() == 1 && j.req.MachineID != "" && !j.req.DryRun && !j.needsDevice()
}

// claim writes a "claimed" entry for a request id the ledger does not
// know yet, in the one round trip that also tells that it is new: most
// requests are, and then the ledger is not read. It reports false, with
// nothing written, when the id has an entry: the caller reads it. A claim
// says that a message works on the id and that no call was sent; the
// "calling" entry written over it before the call says when one may
// have been (steps.go).
func (w *Worker) claim(ctx context.Context, j *job) (bool, error) {
	e := j.entryNow(queue.StateClaimed, w.clock.Now(), w.opts.Presence.Instance())
	err := w.opts.Ledger.Put(ctx, j.t.name, j.req.RequestID, nil, e)
	if errors.Is(err, queue.ErrConflict) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	j.entry = e
	return true, nil
}

var errCallUnderWay = errLeave("a call of this request went out from another process, which may still be at work on it")

// entryNow is the ledger entry this message writes for its request id
// before its result: claimed, or calling, as of now.
func (j *job) entryNow(state string, now time.Time, writer string) *queue.Entry {
	return newEntry(state, j.seq, j.req, now, writer)
}

// newEntry is a ledger entry in state of the request at seq, written now
// by writer.
func newEntry(state string, seq uint64, req offboard.Request, now time.Time, writer string) *queue.Entry {
	return &queue.Entry{State: state, Seq: seq, MachineID: req.MachineID, ComputerDNSName: req.ComputerDNSName, Started: now.UTC(), Writer: writer}
}

// withdrawn answers a request of a cancelled campaign: failed, cancelled,
// with a dead letter, and no API call. The campaign is the one its source
// names, or the one its request id has the form of when it was stored
// before the cancel (campaign.Watcher.Cancelled).
func (w *Worker) withdrawn(ctx context.Context, j *job) bool {
	res := w.cancelled(j)
	if res == nil {
		return false
	}
	w.finish(ctx, j, res)
	return true
}

// cancelled is the result of a request of a cancelled campaign (nil: its
// campaign, if any, is not cancelled): no call of it goes out, also when
// the cancel came while it waited in the worker.
func (w *Worker) cancelled(j *job) *offboard.Result {
	if w.campaigns == nil {
		return nil
	}
	name, cancelled := w.campaigns.Cancelled(j.t.name, j.req, cancelStored(j.req, j.stored))
	if !cancelled {
		return nil
	}
	r := j.failed(offboard.CodeCancelled, "campaign "+offboard.Quote(name)+" was cancelled by an operator before the request's offboard call", nil)
	if r.Attempts > 0 || j.mayHaveActed || j.calledBefore() {
		// A call went out before the cancel (answered 5xx, or its answer
		// lost), and no action of it showed: none goes out after it.
		r.Error.Message = "campaign " + offboard.Quote(name) + " was cancelled by an operator; an offboard call of the request before the cancel created no action that shows, and no call went out after it"
	}
	return r
}

// cancelStored is when a request counts as stored for a campaign's
// cancel: when the server stored it, or no time at all (whenever sent)
// for a retry. A retry re-sends a request of that id whenever the
// operator asks (dead retry, weeks later): by the id's form it is the
// cancelled campaign's, whenever sent. What its first attempt was, and
// when, the ledger may have forgotten (--ledger-ttl).
func cancelStored(req offboard.Request, stored time.Time) time.Time {
	if req.AttemptOrFirst() > 1 {
		return time.Time{}
	}
	return stored
}

// minKeepAlive is the shortest time between a request's in-progress
// acks. The worker's flags refuse an ack wait under 1s, but its options
// take any: under 3ns a third of it is 0, and each tick set the next at
// once, a loop of messages to the server for every request under way.
// Time compressed 200 times makes the default ack wait of 1m 300ms, a
// tick every 100ms.
const minKeepAlive = 100 * time.Millisecond

// keepAlive tells JetStream, every third of the ack wait (minKeepAlive at
// least), that the request
// is still being worked on (waiting for quota, a backoff, another request
// for the same device), so it is not redelivered meanwhile. The returned
// func stops it.
func (w *Worker) keepAlive(j *job) func() {
	var (
		mu      sync.Mutex
		stopped bool
		tick    *time.Timer
	)
	every := max(w.opts.Settings.AckWait/3, minKeepAlive)
	// Real time: this paces messages to the server, not logic. A timer,
	// not a goroutine: most requests finish long before the first tick.
	// Set under mu: the first tick reads it.
	// The delivery as it is now: j.msg may be replaced meanwhile by the
	// same delivery read whole (queue.Whole), which it is kept alive as.
	msg := j.msg
	mu.Lock()
	defer mu.Unlock()
	tick = time.AfterFunc(every, func() {
		mu.Lock()
		defer mu.Unlock()
		if stopped {
			return
		}
		if err := msg.InProgress(); err != nil {
			j.log.Warn("extend ack wait", zap.Error(err))
		}
		tick.Reset(every)
	})
	// Once stop returns, no tick is under way and none comes.
	return func() {
		mu.Lock()
		defer mu.Unlock()
		stopped = true
		tick.Stop()
	}
}

// leave puts a request back for redelivery after a short delay: the queue
// or the ledger could not be reached, or the worker is stopping. When NATS
// was away for a moment (a restart, a leader election), the request comes
// back almost at once: the nak, buffered while the connection is down,
// reaches the server as soon as it is back, and the request is not left
// to its ack wait.
//
// A fresh request whose id had an entry after all (errNotNew) is taken
// again at once too: its redelivery reads the entry and goes by it.
func (w *Worker) leave(j *job, err error) {
	w.leaveFor(j, err, w.leaveDelay(j, err))
}

// leaveDelay is how long a request that leaves for err stays away.
//
// A result, dead letter or action event answered "duplicate message id
// is in process" (queue.InProcess: on a cluster, another publish of the
// same message id, another delivery's, or this one's own whose answer ran
// out of time, still being stored) comes back as soon as after an
// outage: that store takes milliseconds, and the request, taken again,
// finds its answer stored and is acked. It stayed away 5 s.
func (w *Worker) leaveDelay(j *job, err error) time.Duration {
	delay := 5 * time.Second
	switch {
	case errors.Is(err, errNotNew) || queue.Outage(err) || queue.InProcess(err):
		delay = outageRetry
	case heldByAControl(err):
		delay = 0
	case errors.Is(err, errCancelledAfterLostAnswer):
		delay = max(delay, min(w.untilShown(j), w.opts.ActionShowsWithin))
	}
	return delay
}

// untilShown is how long until the action a call of the request may have
// made shows in lists for sure (ActionShowsWithin after the call): taken
// again no sooner, the request of a cancelled campaign looks for it once
// and is answered. Taken again every few seconds meanwhile, it read the
// device's actions a few times at each delivery, to leave again.
func (w *Worker) untilShown(j *job) time.Duration {
	last := j.earlierCall
	if j.mayHaveActed {
		at := j.lostAt
		if at.IsZero() {
			at = w.clock.Now() // no time kept: as if just now
		}
		if at.After(last) {
			last = at
		}
	}
	return w.opts.ActionShowsWithin - w.clock.Since(last)
}

// heldByAControl says whether a request leaves for an operator's control
// (a pause, a budget lowered or set, controls not read anew since NATS
// came back): it goes back to the stream ready to be taken, held there by
// the control alone, so that a resume or a budget raised lets it go on at
// once, as it does the requests never taken, not after a delay. The
// tenant loop takes none of it meanwhile: it fetches no paused priority,
// nothing while the budget is spent, nothing until the controls are read.
func heldByAControl(err error) bool {
	return errors.Is(err, errPausedWhileWaiting) || errors.Is(err, errBudgetLowered) || errors.Is(err, errBudgetSet) ||
		errors.Is(err, errControlsUnread)
}

// errNotNew says that a fresh request's first ledger write found an entry
// for its id: nothing was sent, and the request is taken again as a
// redelivery, which reads the entry.
var errNotNew = errLeave("the request id has a ledger entry already")

// notNew turns the conflict of a fresh request's first ledger write (a
// create: prev is nil) into errNotNew.
func notNew(prev *queue.Entry, err error) error {
	if prev == nil && errors.Is(err, queue.ErrConflict) {
		return errNotNew
	}
	return err
}

// claimBeforeWaiting claims a fresh request's id before it waits (for its
// device, its budget or its quota): a request that waits holds its id in
// the ledger, so that another message of the id, or the answer of a
// tenant nobody serves (unrouted.go), sees that it is worked on.
func (w *Worker) claimBeforeWaiting(ctx context.Context, j *job) error {
	if j.entry != nil {
		return nil
	}
	claimed, err := w.claim(ctx, j)
	if err != nil {
		return err
	}
	if !claimed {
		return errNotNew
	}
	return nil
}

// outageRetry is how soon a step cut off by a NATS outage is taken again.
const outageRetry = 250 * time.Millisecond

// leaveFor is leave with the delay before redelivery.
func (w *Worker) leaveFor(j *job, err error, delay time.Duration) {
	switch {
	case errors.Is(err, context.Canceled):
		j.log.Info("request left for redelivery: worker stopping")
	case errors.Is(err, errNotNew):
		j.log.Info("request left for redelivery: its id is in the ledger already; taken again to go by its entry")
	case errors.Is(err, errCallUnderWay):
		// Every 5 s per request while a silent process's announcement
		// counts (silentWriterWait): thousands a second after a crash.
		msg := "request left for redelivery: its call may still be under way elsewhere"
		j.t.repeats.log(j.log, zap.InfoLevel, msg, msg, zap.Duration("for", delay))
	case errors.Is(err, errPausedWhileWaiting):
		j.log.Info("request left for redelivery: its tenant was paused while it waited")
		if j.checked && w.cancelled(j) != nil {
			// Its campaign's cancel landed as it left: the tenant's
			// loop takes it once it is back in the stream, paused.
			j.t.cancels.landBackIn(delay)
		}
	case errors.Is(err, errControlsUnread):
		j.log.Info("request left for redelivery: the controls were not read again yet since NATS came back, or their watch missed an entry")
	case errors.Is(err, errRefusedAfterLostAnswer):
		j.log.Info("request left for redelivery: a guard refuses the device, and a call of it may have created an action that does not show yet")
	case errors.Is(err, errCancelledAfterLostAnswer):
		j.log.Info("request left for redelivery: its campaign was cancelled, and a call of it may have created an action that does not show yet")
		j.t.cancels.landBackIn(delay)
	case queue.StoreRefused(err):
		// Until an operator acts: it waits in the stream, taken
		// again every few seconds, not as after an outage.
		msg := "request left for redelivery: " + w.opts.StoreRefusedHint(err)
		j.t.repeats.log(j.log, zap.ErrorLevel, causeOf(msg, err), msg, zap.Error(err))
	default:
		j.t.repeats.log(j.log, zap.WarnLevel, causeOf("left", err), "request left for redelivery", zap.Error(err))
	}
	if j.stopAlive != nil {
		j.stopAlive()
	}
	if j.checked && j.entry == nil && !j.entryGone && j.delivered > 0 && (j.delivered == 1 || j.t.uncalled.follows(j.seq, j.delivered)) {
		// No entry written, so no call sent by this delivery (a "calling"
		// entry comes first): its next delivery here is known to be new,
		// if this one was. A later delivery whose claim failed does not
		// know whether an earlier one called (its entry may be gone):
		// noted, its next delivery skipped the look for that call's
		// action.
		j.t.uncalled.note(j.seq, j.delivered)
	}
	w.callingBackToClaim(j)
	w.dropClaimOverGone(j)
	if j.checked && j.entry == nil && j.delivered == 1 && !errors.Is(err, errNotNew) && !queue.Outage(err) && !queue.StoreRefused(err) {
		w.claimReturned(j.t, j.seq, j.req)
	}
	w.nak(j, err, delay)
}

// claimReturned writes a claim of the message at seq for a request that
// goes back to the stream at its first delivery before any ledger write
// (a fresh request met by a stop, a pause or a budget change before its
// call, or returned by a cancel pass): no call of it went out, as a call
// is preceded by its "calling" entry. Left with no entry, its next
// delivery could not tell it from a request whose entry is gone after a
// call (entryGone): it read the tenant's results, and listed the device's
// actions, a few times with backoffs when it was stored less than
// ActionShowsWithin ago, before its call, and a cancel of its campaign
// waited for that look. Its own claim reads as a request never called
// for. A first delivery only: a later one with no entry may follow a call
// whose entry is gone, and its claim would hide that call. An id that has
// an entry (another message's) keeps it; a failure leaves none, which
// errs on the safe side.
func (w *Worker) claimReturned(t *tenantRun, seq uint64, req offboard.Request) {
	e := newEntry(queue.StateClaimed, seq, req, w.clock.Now(), w.opts.Presence.Instance())
	ctx, cancel := queue.StepCtx(context.Background())
	defer cancel()
	if err := w.opts.Ledger.Put(ctx, t.name, req.RequestID, nil, e); err != nil && !errors.Is(err, queue.ErrConflict) {
		t.log.Info("a request going back to the stream before its call not claimed: its next delivery looks for an earlier call's action", zap.String("request_id", req.RequestID), zap.Error(err))
	}
}

// mark marks the request as under way in this process; false when it is
// already (a redelivery while this process works on it).
func (j *job) mark() bool {
	_, busy := j.t.working.LoadOrStore(j.workKey(), true)
	return !busy
}

// workKey tells a request under way from another: its place in the
// request stream and when the stream stored it. The place alone does not:
// a request stream deleted and made again numbers its requests from 1
// again, and a request of the new stream taken for a redelivery of the
// old one's under way at its place was left to it, unanswered.
type workKey struct {
	seq    uint64
	stored int64
}

func (j *job) workKey() workKey { return workKey{j.seq, j.stored.UnixNano()} }

// unmark clears the request's mark, once: a nak clears it before it goes
// out, as the redelivery may come at once (a control's hand-back), and
// the handler's end must not clear that redelivery's mark.
func (j *job) unmark() {
	if !j.unmarked {
		j.unmarked = true
		j.t.working.Delete(j.workKey())
	}
}

// nak hands the request back for redelivery after delay. Left for err.
func (w *Worker) nak(j *job, err error, delay time.Duration) {
	j.unmark() // done with it: its redelivery is the next delivery's
	if errors.Is(err, context.Canceled) {
		// A stop does not wait for NATS: the nak goes out as the
		// connection drains, and a request it misses comes back after
		// its ack wait.
		if nerr := j.msg.NakWithDelay(delay); nerr != nil {
			j.log.Warn("nak request", zap.Error(nerr))
		}
		return
	}
	// Sent again until the server has it: lost in a connection that went
	// silent, the nak would leave the request to its ack wait once NATS
	// is back. Bounded as a result's store is.
	ctx, cancel := storeCtx(context.Background())
	defer cancel()
	w.untilDone(ctx, j, "nak request", func(ctx context.Context) error {
		return queue.Nak(ctx, w.opts.JS, j.msg, delay)
	})
}

// callingBackToClaim writes the "calling" entry this delivery wrote back
// as its claim as the request leaves, when no offboard attempt of it went
// out but those answered 429, which the API turns away before acting
// (j.attempts counts those sent, j.throttled those), and no earlier call
// may have (calledBefore): it leaves before its call, at a stop while the call's
// entry in the quota journal waits, at a pause or a budget change
// checked before the attempt, or when a lease would run out first. Left
// "calling", the entry would read to its redelivery as a call that may
// have gone out: for ActionShowsWithin it would skip a cancel of its
// campaign, look for an action and call. Read as this message's claim,
// it is a request never called for (answered), and a cancel applies. An
// earlier delivery's or process's call keeps its entry: losing it could
// make a second action. The write is a compare-and-swap over the entry,
// under a context of its own (the request's may have ended at a stop); a
// conflict (the result stored after all, another worker at the id) or a
// failure leaves the entry as it is, which errs on the safe side.
func (w *Worker) callingBackToClaim(j *job) {
	e := j.entry
	if !j.wroteCalling || e == nil || e.State != queue.StateCalling || e.Seq != j.seq || e.Writer != w.opts.Presence.Instance() ||
		j.attempts > j.throttled || j.mayHaveActed || j.calledBefore() {
		return
	}
	claim := *e
	claim.State, claim.Started = queue.StateClaimed, w.clock.Now().UTC()
	ctx, cancel := queue.StepCtx(context.Background())
	defer cancel()
	err := w.opts.Ledger.Put(ctx, j.t.name, j.req.RequestID, e, &claim)
	if errors.Is(err, queue.ErrConflict) {
		j.log.Info("the request's ledger entry changed meanwhile: not written back as its claim")
		return
	}
	if err != nil {
		j.log.Warn("the request's calling entry not written back as its claim: its redelivery takes it as a call that may have gone out", zap.Error(err))
		return
	}
	j.entry = &claim
}

// dropClaimOverGone takes back, as the request leaves, the claim this
// delivery wrote where its id had no entry (entryGone): left, the claim
// reads to the next delivery as its own message's, written before any
// call, and that delivery would take the request for a new one and skip
// the look for an earlier delivery's call, whose "calling" entry is what
// went. With no entry again, the next delivery looks as this one did. A
// "calling" entry this delivery wrote stays, as always. A conflict
// (another worker at the id) or a failure leaves the claim as it is.
func (w *Worker) dropClaimOverGone(j *job) {
	e := j.entry
	if !j.entryGone || e == nil || e.State != queue.StateClaimed || e.Seq != j.seq {
		return
	}
	ctx, cancel := queue.StepCtx(context.Background())
	defer cancel()
	if err := w.opts.Ledger.Drop(ctx, j.t.name, j.req.RequestID, e); err != nil {
		j.log.Warn("the request's claim over a ledger entry that was gone not taken back: its redelivery takes the request for a new one", zap.Error(err))
		return
	}
	j.entry = nil
}

func (j *job) result(outcome offboard.Outcome) *offboard.Result {
	return &offboard.Result{
		RequestID: j.req.RequestID, Tenant: j.t.name, MachineID: j.req.MachineID,
		ComputerDNSName: j.req.ComputerDNSName, Outcome: outcome, Attempts: j.attempts,
		RequestedBy: j.req.RequestedBy, Source: j.req.Source, RequestSeq: j.seq,
		Priority: j.prio, ReceivedAt: j.received, Attempt: j.req.AttemptOrFirst(),
	}
}

// failed is a failed result; v, when given, is the API's answer.
func (j *job) failed(code, message string, v *mde.Verdict) *offboard.Result {
	r := j.result(offboard.OutcomeFailed)
	r.Error = offboard.Failed(code, message)
	if v != nil {
		r.Error.HTTPStatus = v.Status
		r.Error.APICode = v.APICode()
	}
	return r
}

func (j *job) withAction(outcome offboard.Outcome, a mde.Action) *offboard.Result {
	r := j.result(outcome)
	r.MachineAction = a.Raw
	if r.MachineID == "" {
		r.MachineID = a.MachineID
	}
	if r.ComputerDNSName == "" {
		// A request by machineId names no device: the action does, unless
		// the API left it null, as it may on a fresh one.
		r.ComputerDNSName = apiText(a.ComputerDNSName)
	}
	return r
}

// finish records and publishes a request's result, then acks the request.
// If anything fails before the ack, the request comes back and is answered
// from the ledger or worked again; the result's message id keeps it single.
func (w *Worker) finish(ctx context.Context, j *job, res *offboard.Result) {
	if j.attempts > 0 && j.free != nil {
		// Its calls are over. (A request that made none keeps its slot:
		// those are bounded by the slots alone, not by the quota.)
		j.free()
	}
	res.CompletedAt = w.clock.Now().UTC()
	res.Attempts = j.attempts + j.earlierCalls
	data, err := w.marshalResult(j, res)
	if err != nil {
		w.leave(j, err)
		return
	}
	pctx, cancel := storeCtx(ctx)
	defer cancel()
	var (
		msgID  string
		stores []queue.Stored
	)
	if j.checked {
		msgID = offboard.ResultMsgID(j.t.name, res.RequestID, res.Attempt)
		stores, err = w.storeLedger(pctx, j, res, data)
	} else {
		msgID, err = w.seqMsgID(pctx, j.t.name, j.msg, j.seq)
	}
	if err != nil {
		w.leave(j, err)
		return
	}
	pubs, added, err := w.publishAsync(pctx, j.t.name, j.msg, msgID, j.seq, res, data)
	err = errors.Join(err, queue.WaitStored(pctx, append(stores, pubs...)...))
	// Counted once stored, whatever else failed: taken again, the request
	// finds its result out already, a repeat.
	w.countResult(j.t.name, j.msg, res, !added())
	if err != nil {
		w.leave(j, err)
		return
	}
	if err := w.startTracking(pctx, j, res); err != nil {
		w.leave(j, err)
		return
	}
	w.ack(pctx, j)
	fields := []zap.Field{zap.String("outcome", res.Outcome), zap.String("machine_id", res.MachineID), zap.Int("attempts", res.Attempts)}
	if res.Error != nil {
		fields = append(fields, zap.String("code", res.Error.Code), zap.String("error", res.Error.Message))
	}
	j.log.Info("request completed", fields...)
	tellRefused(j, res)
}

// refusedHints are the failures that every request of a tenant meets
// until an operator acts, and what to do.
var refusedHints = map[string]string{
	offboard.CodeUnauthorized: "the tenant's credentials were refused: every request fails unauthorized until they are fixed; " +
		"update its secret or certificate (or tenantId, clientId), then offboardctl dead retry TENANT --all --code unauthorized",
	offboard.CodeForbidden: "the API refused the tenant's application a permission: every request fails forbidden until it is granted; " +
		"grant Machine.Offboard and Machine.Read.All with admin consent, then offboardctl dead retry TENANT --all --code forbidden",
}

// tellRefused logs a failure that needs an operator as an error, once a
// minute per tenant and code: "request completed" tells each request,
// at info.
func tellRefused(j *job, res *offboard.Result) {
	if res.Error == nil || refusedHints[res.Error.Code] == "" {
		return
	}
	j.t.repeats.log(j.log, zap.ErrorLevel, "refused:"+res.Error.Code, refusedHints[res.Error.Code],
		zap.String("code", res.Error.Code), zap.String("error", res.Error.Message))
}

// resultRoom is what a result's message and its ledger entry take beside
// the result itself: the message id, the entry's own members.
const resultRoom = 4 << 10

// marshalResult encodes the result. An action too large for a message of
// the server's (with its ledger entry) is cut down to its documented
// members (mde.CutAction): a result that cannot be stored brings its
// request back for ever, to look for its action again each time.
func (w *Worker) marshalResult(j *job, res *offboard.Result) ([]byte, error) {
	data, err := res.Marshal()
	if err != nil || len(res.MachineAction) == 0 || int64(len(data)) <= w.opts.JS.Conn().MaxPayload()-resultRoom {
		return data, err
	}
	j.log.Warn("machine action too large to carry whole: cut down to its documented members",
		zap.String("machine_id", res.MachineID), zap.Int("bytes", len(res.MachineAction)))
	res.MachineAction = mde.CutAction(res.MachineAction)
	return res.Marshal()
}

// storeLedger writes the result over the request id's ledger entry (if
// another worker changed the entry meanwhile, that one owns the request
// id). A created result over the "calling" entry this very message wrote
// is only sent, to travel beside the result (the returned stores); no
// other message may have owned the id since: another delivery of it takes
// a call's entry up only once its writer is at work on it no more
// (callElsewhere). Otherwise, a claim included, it is stored before the
// result goes out, so that a result never speaks for an id another worker
// holds: another delivery of the message takes a claim up without asking
// its writer, which may still be at work (frozen past the ack wait) and
// write its call's entry over it, and call. Any other outcome over a
// "calling" entry is stored first too: a result out without its entry
// brings the request back to the "calling" entry, whose call goes out
// again (nothing in the entry says it was answered) and may be answered
// otherwise, a refused call accepted or a pending action finished; that
// answer would be dropped as the first result's repeat, which would then
// speak for the device wrongly. A created result is what such a repeat
// finds again (the action a call of the request made).
func (w *Worker) storeLedger(ctx context.Context, j *job, res *offboard.Result, data []byte) ([]queue.Stored, error) {
	if e := j.entry; e != nil && e.State == queue.StateCalling && e.Seq == j.seq && res.Outcome == offboard.OutcomeCreated {
		s, err := w.opts.Ledger.FinishAsync(j.t.name, res.RequestID, e, j.seq, data)
		if err != nil {
			return nil, err
		}
		return []queue.Stored{func(ctx context.Context) error {
			return w.finishOverGone(ctx, j, res, data, nil, "", s(ctx))
		}}, nil
	}
	var calls *queue.EarlierCalls
	var comment string
	if res.Outcome == offboard.OutcomeFailed {
		calls = j.keptCalls()
		comment = j.callsComment(res, calls)
	}
	err := w.opts.Ledger.FinishAfter(ctx, j.t.name, res.RequestID, j.entry, j.seq, data, calls, comment)
	return nil, notNew(j.entry, w.finishOverGone(ctx, j, res, data, calls, comment, err))
}

// callsComment is the comment the offboard calls a failed result records
// went out with: those it keeps from before its message (calls), and its
// own attempts. Each went out with the comment of the entry this message
// read or wrote: an earlier delivery's "calling" entry, a failed result's
// entry, or the "calling" entry of its own call, whose comment was the
// earlier calls' where they named one (Worker.comment). Left out, a retry
// on a replica whose tenants file renders another comment (a rolling
// update that changed the template) looked for their action by its own,
// missed it once it had finished, and offboarded the device again. ""
// when no call is recorded, or none named a comment (an earlier release's
// entry).
func (j *job) callsComment(res *offboard.Result, calls *queue.EarlierCalls) string {
	if j.entry == nil || calls == nil && res.Attempts == 0 {
		return ""
	}
	return j.entry.Comment
}

// finishOverGone stores the result as a new entry when writing it over
// the entry this message read or wrote (err) failed because that entry is
// gone: the ledger bucket purged, the entry deleted by hand or expired
// while the request was worked on. The message's own work, its call
// included, is what the result says; taken again with no entry, the
// request would be worked on as new and its device called again. An
// entry another message wrote meanwhile is left to that message
// (ErrConflict, as before).
func (w *Worker) finishOverGone(ctx context.Context, j *job, res *offboard.Result, data []byte, calls *queue.EarlierCalls, comment string, err error) error {
	if j.entry == nil || !errors.Is(err, queue.ErrConflict) {
		return err
	}
	now, gerr := w.opts.Ledger.Get(ctx, j.t.name, res.RequestID)
	if gerr != nil || now != nil {
		return err
	}
	j.log.Warn("the request's ledger entry is gone (bucket purged, entry deleted or expired): its result stored as a new entry")
	return w.opts.Ledger.FinishAfter(ctx, j.t.name, res.RequestID, nil, j.seq, data, calls, comment)
}

// storeCtx is the context results are stored and acked under: a stop must
// not cut it short (a result half-stored is worse than a stop a moment
// late), but it has its own bound.
func storeCtx(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
}

// ledgerResult is the result the ledger entry e stores for the request;
// false when it cannot be read (not JSON of a result, or the result of
// another request id): the request is then answered so (unreadableEntry).
func (w *Worker) ledgerResult(ctx context.Context, j *job, e *queue.Entry) (*offboard.Result, bool) {
	var res offboard.Result
	err := json.Unmarshal(e.Result, &res)
	if err == nil && res.RequestID != j.req.RequestID {
		err = errors.New("it is no result of this request id")
	}
	if err != nil {
		w.unreadableEntry(ctx, j, fmt.Errorf("ledger result of %s: %w: %w", j.req.RequestID, queue.ErrUnreadable, err))
		return nil, false
	}
	return &res, true
}

// unreadableEntry answers a request whose id's ledger entry (j.entry)
// cannot be read: failed, internal_error, written over that entry, with a
// dead letter, and no API call. Whether a call of the id went out, and
// what answered it, is not known: taken again, the request met the same
// entry for ever, never answered. An operator who has looked can retry it
// (a higher attempt is worked on again over the failed result).
func (w *Worker) unreadableEntry(ctx context.Context, j *job, err error) {
	j.log.Error("the request id's ledger entry cannot be read: answered internal_error, nothing called", zap.Error(err))
	w.finish(ctx, j, j.failed(offboard.CodeInternal, "the request id's entry in the worker's ledger cannot be read: nothing was called; retry the request once the entry is checked", nil))
}

// replay answers a request id that already has a result from the ledger,
// without calling the API.
//
// The stored result goes out again under its own message id, as it was
// stored: its requestSeq stays that of the request it answers (e.Seq). A
// failed one is copied to the dead letters as this message, under its own
// sequence: the same request taken again sends the copy its result may
// have gone out without (the dead-letter stream drops a repeat by its
// message id); a publisher's message sent anew gets a copy of its own, as
// every failed request does, which can be retried (dead retry takes the
// attempt after the highest of the request id's dead letters) even once
// the first copy has aged out of its stream.
func (w *Worker) replay(ctx context.Context, j *job, e *queue.Entry) {
	res, ok := w.ledgerResult(ctx, j, e)
	if !ok {
		return
	}
	pctx, cancel := storeCtx(ctx)
	defer cancel()
	msgID := offboard.ResultMsgID(j.t.name, res.RequestID, res.Attempt)
	stores, added, err := w.publishAsync(pctx, j.t.name, j.msg, msgID, j.seq, res, e.Result)
	err = errors.Join(err, queue.WaitStored(pctx, stores...))
	w.countResult(j.t.name, j.msg, res, !added())
	if err != nil {
		w.leave(j, err)
		return
	}
	// In case a crash, or a failure, came between result and tracking.
	if err := w.startTracking(pctx, j, res); err != nil {
		w.leave(j, err)
		return
	}
	w.ack(pctx, j)
	j.log.Info("request answered from the ledger", zap.String("outcome", res.Outcome), zap.Uint64("first_seq", e.Seq))
}

// publish stores the result, and a dead letter if it failed.
func (w *Worker) publish(ctx context.Context, tenant string, msg jetstream.Msg, msgID string, seq uint64, res *offboard.Result, data []byte) error {
	stores, added, err := w.publishAsync(ctx, tenant, msg, msgID, seq, res, data)
	err = errors.Join(err, queue.WaitStored(ctx, stores...))
	w.countResult(tenant, msg, res, !added())
	return err
}

// publishAsync sends the result, and a dead letter of msg (the request at
// seq) if it failed, side by side; the returned stores wait for those
// sent, also when err says another was not. Once they were waited for,
// added says whether the result was stored by this publish: not a repeat
// of its message id the results stream dropped, and not lost. A result
// stored beside a dead letter that failed is added all the same; the
// request, taken again for its dead letter, finds it a repeat.
func (w *Worker) publishAsync(ctx context.Context, tenant string, msg jetstream.Msg, msgID string, seq uint64, res *offboard.Result, data []byte) (stores []queue.Stored, added func() bool, err error) {
	var stored bool
	added = func() bool { return stored }
	s := w.opts.Settings.Subjects
	place := offboard.Seq{N: seq}
	if res.Error != nil && queue.DeadIDByPlace(msg.Headers()) {
		if place.Epoch, err = w.epochOf(ctx, msg); err != nil {
			return nil, added, err
		}
	}
	result, repeat, err := queue.PublishJSONAsync(w.opts.JS, s.Result(tenant), msgID, data)
	if err != nil {
		return nil, added, err
	}
	stores = []queue.Stored{func(ctx context.Context) error {
		err := result(ctx)
		stored = err == nil && !repeat()
		return err
	}}
	if res.Error == nil {
		return stores, added, nil
	}
	dead, err := queue.PublishDeadAsync(w.opts.JS, s.Dead(tenant), msg, place, res.Error.Code, res.Error.Message)
	if err != nil {
		return stores, added, err
	}
	return append(stores, dead), added, nil
}

// countResult counts a stored result and records its time, and a guard's
// refusal with it. A repeat, the results stream dropped (a request
// answered again from the ledger, its result already out, or refused
// again by a guard before its ledger entry was met), is not counted again.
func (w *Worker) countResult(tenant string, msg jetstream.Msg, res *offboard.Result, repeat bool) {
	if repeat {
		return
	}
	code := ""
	if res.Error != nil {
		code = res.Error.Code
	}
	label := w.metricTenant(tenant)
	w.m.Results.WithLabelValues(label, res.Outcome, code).Inc()
	if code == offboard.CodeBlockedByPolicy && slices.Contains(offboard.Rules, res.Error.Rule) {
		w.m.Blocked.WithLabelValues(label, res.Error.Rule).Inc()
	}
	w.observeResult(msg, res)
}

// seqMsgID is the message id of the answer of msg, the request at seq,
// by its place in the request stream (offboard.SeqResultMsgID).
func (w *Worker) seqMsgID(ctx context.Context, tenant string, msg jetstream.Msg, seq uint64) (string, error) {
	epoch, err := w.epochOf(ctx, msg)
	if err != nil {
		return "", err
	}
	return offboard.SeqResultMsgID(tenant, offboard.Seq{Epoch: epoch, N: seq}), nil
}

// metricTenant is the tenant label: the name if configured, else
// queue.UnknownTenant, so labels stay bounded.
func (w *Worker) metricTenant(name string) string {
	if _, ok := w.tenants[name]; ok {
		return name
	}
	return queue.UnknownTenant
}

// startTracking follows the result's action, when the tenant asks for it.
// It comes before the ack, so a crash cannot lose it; nor can a failure
// (its first event or its state not stored: NATS away for a moment): the
// request is then left, not acked, and taken again, answered from the
// ledger (the result stands, its repeat dropped by its message id), and
// its action followed then.
func (w *Worker) startTracking(ctx context.Context, j *job, res *offboard.Result) error {
	if j.t.tracker == nil || len(res.MachineAction) == 0 {
		return nil
	}
	if err := j.t.tracker.track(ctx, res); err != nil {
		return fmt.Errorf("start tracking the action: %w", err)
	}
	return nil
}

// ack acknowledges a request whose result is stored, then deletes it from
// the request stream (queue.Retire). The ack comes first so that the
// delete finds the request no longer pending: deleting a pending message
// makes the server report it terminated. The delete is sent even when the
// ack failed: it ends the delivery as well. A request whose consumer is
// gone, or read from the stream rather than delivered, is deleted only
// while the stream is the one that stored it: one made again holds
// another request at its place.
func (w *Worker) ack(ctx context.Context, j *job) {
	if j.stopAlive != nil {
		j.stopAlive()
	}
	ack := j.msg.DoubleAck
	consumerGone := false
	if w.opts.JS != nil {
		ack = func(ctx context.Context) error {
			err := queue.Ack(ctx, w.opts.JS, j.msg)
			if errors.Is(err, queue.ErrConsumerGone) {
				consumerGone = true
				return nil
			}
			return err
		}
	}
	if !w.untilDone(ctx, j, "ack request", ack) {
		return
	}
	// A request read from the stream (storedRequest) has no delivery
	// whose ack would tell: the stream may have been made again while it
	// was answered.
	_, read := j.msg.(storedRequest)
	if (consumerGone || read) && !w.storedInThisStream(ctx, j) {
		// The stream may have been made again: its request at this
		// place is another one, not answered yet.
		j.log.Info("answered request not deleted: the request stream is gone or made again since it stored the request", zap.Bool("consumer_gone", consumerGone))
		return
	}
	w.untilDone(ctx, j, "delete answered request", func(ctx context.Context) error {
		return queue.Retire(ctx, w.requests, j.seq)
	})
}

// untilDone runs a step that follows a stored result. A step lost to an
// outage is sent again once NATS is back: else the request would come back
// only after its ack wait, or stay in the stream. The pause is real time:
// it spaces messages to the server, not logic a test controls. A step that
// fails for good is logged: the result stands, a redelivery is answered
// from the ledger, and an answered request left in the stream is removed
// by the sweep (queue.Sweep). After a failure, the request stream is
// looked at first: deleted, or made again since it stored the request,
// the request went with it, and the step and those after it are given up
// (false). They would go to the stream made again, to the place of its
// request there: an ack the consumer made again does not answer until it
// has delivered that request, then acks it, and a delete removes it.
// The look is brief, made while connected to NATS, and once in
// streamLookEvery at most: an outage or a leader's election does not slow
// the step's retries.
func (w *Worker) untilDone(ctx context.Context, j *job, what string, step func(context.Context) error) bool {
	var looked time.Time
	for {
		sctx, cancel := queue.StepCtx(ctx)
		err := step(sctx)
		cancel()
		if err == nil {
			return true
		}
		if (looked.IsZero() || time.Since(looked) >= streamLookEvery) && w.opts.JS != nil && w.opts.JS.Conn().IsConnected() {
			looked = time.Now()
			if gone := w.storedInAStreamGone(ctx, j); gone != nil {
				j.log.Warn(what+": given up, the request went with its stream", zap.Error(err), zap.NamedError("stream", gone))
				return false
			}
		}
		if !queue.Outage(err) || sleepCtx(ctx, realClock, outageRetry) != nil {
			j.log.Warn(what, zap.Error(err))
			return true
		}
	}
}

// storedInAStreamGone says why the request stream that stored j's request
// is gone, or nil when it is not, or not known to be: deleted, or made
// again since it stored the request.
func (w *Worker) storedInAStreamGone(ctx context.Context, j *job) error {
	if j.stored.IsZero() || w.requests == nil {
		return nil
	}
	sctx, cancel := context.WithTimeout(ctx, streamLook)
	defer cancel()
	info, err := w.requests.Info(sctx)
	switch {
	case errors.Is(err, jetstream.ErrStreamNotFound):
		return fmt.Errorf("stream %s was deleted", offboard.StreamRequests)
	case err == nil && info.Created.After(j.stored):
		return fmt.Errorf("stream %s was made again at %s, after it stored the request", offboard.StreamRequests, info.Created.UTC().Format(time.RFC3339Nano))
	}
	return nil
}

// storedInThisStream says whether the request stream is known to be the
// one that stored j's request: there, and not made again since. A look
// that fails says no: an answered request left in the stream is
// delivered again and answered from the ledger, while one deleted in
// another's place is lost.
func (w *Worker) storedInThisStream(ctx context.Context, j *job) bool {
	if w.requests == nil {
		return true
	}
	if j.stored.IsZero() {
		return false
	}
	sctx, cancel := queue.StepCtx(ctx)
	defer cancel()
	info, err := w.requests.Info(sctx)
	return err == nil && !info.Created.After(j.stored)
}

// streamLook bounds a look at the request stream after a step failed,
// and streamLookEvery spaces them.
const (
	streamLook      = 500 * time.Millisecond
	streamLookEvery = 10 * time.Second
)

// realClock paces messages to the server.
var realClock = clockwork.NewRealClock()
