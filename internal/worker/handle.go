package worker

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"runtime/debug"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/zap"

	"github.com/contoso-secops/mde-offboard/internal/config"
	"github.com/contoso-secops/mde-offboard/internal/limiter"
	"github.com/contoso-secops/mde-offboard/internal/mde"
	"github.com/contoso-secops/mde-offboard/internal/queue"
	"github.com/contoso-secops/mde-offboard/offboard"
)

// clockSkew is how far the API's clock and ours may disagree.
const clockSkew = 5 * time.Minute

// job is one request being worked on.
type job struct {
	t        *tenantRun
	msg      jetstream.Msg
	seq      uint64
	prio     offboard.Priority
	req      offboard.Request
	received time.Time
	attempts int
	log      *zap.Logger
	// checked is set once the request passed its checks: from then on its
	// id is used in the ledger and in the result's message id.
	checked bool
	// entry is the request id's ledger entry as this job last read or
	// wrote it (nil: none); the result is written over it.
	entry *queue.Entry
	// stopAlive stops the in-progress ticks; called before the ack or nak,
	// so that a late tick cannot undo a nak's delay.
	stopAlive func()
}

// handle works one request to its result. permit is an offboard permit,
// taken before the request was pulled; handle spends or releases it.
func (w *Worker) handle(ctx context.Context, t *tenantRun, msg jetstream.Msg, prio offboard.Priority, permit *limiter.Permit) {
	w.m.InFlight.WithLabelValues(t.name).Inc()
	defer w.m.InFlight.WithLabelValues(t.name).Dec()
	w.m.RequestsReceived.WithLabelValues(t.name, string(prio)).Inc()
	defer permit.Release() // no-op once spent

	j := &job{t: t, msg: msg, prio: prio, received: w.clock.Now().UTC()}
	if meta, err := msg.Metadata(); err == nil {
		j.seq = meta.Sequence.Stream
	}
	j.log = t.log.With(zap.Uint64("request_seq", j.seq))
	// A redelivery of a request this process is still working on (its ack
	// wait ran out) is left to the first delivery, which will ack it.
	if _, busy := t.working.LoadOrStore(j.seq, true); busy {
		j.log.Debug("redelivery of a request under way: left to the first delivery")
		return
	}
	defer t.working.Delete(j.seq)
	j.stopAlive = w.keepAlive(j)
	defer j.stopAlive()
	defer func() {
		if r := recover(); r != nil {
			j.log.Error("request handling panicked", zap.Any("panic", r), zap.ByteString("stack", debug.Stack()))
			w.finish(ctx, j, j.failed(offboard.CodeInternal, "the worker met an internal error; see its log", nil))
		}
	}()

	req, err := offboard.ParseRequest(msg.Data(), t.name)
	j.req = req
	j.log = j.log.With(zap.String("request_id", req.RequestID))
	if err != nil {
		w.finish(ctx, j, j.failed(offboard.CodeInvalidRequest, err.Error(), nil))
		return
	}
	j.checked = true
	entry, err := w.opts.Ledger.Get(ctx, t.name, req.RequestID)
	if err != nil {
		w.leave(j, err)
		return
	}
	j.entry = entry
	if entry != nil && entry.State == queue.StateDone {
		w.replay(ctx, j, entry)
		return
	}
	if entry != nil && entry.Seq != j.seq && w.clock.Since(entry.Started) < w.opts.CallingLease {
		// Another message with this id is being worked on right now; come
		// back when it has its result, and answer from the ledger then.
		w.leaveFor(j, fmt.Errorf("request id is being worked on by request %d", entry.Seq), time.Minute)
		return
	}
	res, err := w.process(ctx, j, permit)
	if err != nil {
		w.leave(j, err)
		return
	}
	w.finish(ctx, j, res)
}

// keepAlive tells JetStream, every third of the ack wait, that the request
// is still being worked on (waiting for quota, a backoff, another request
// for the same device), so it is not redelivered meanwhile. The returned
// func stops it.
func (w *Worker) keepAlive(j *job) func() {
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		// Real time: this paces messages to the server, not logic.
		tick := time.NewTicker(w.opts.Settings.AckWait / 3)
		defer tick.Stop()
		for {
			select {
			case <-done:
				return
			case <-tick.C:
				if err := j.msg.InProgress(); err != nil {
					j.log.Warn("extend ack wait", zap.Error(err))
				}
			}
		}
	})
	return sync.OnceFunc(func() { close(done); wg.Wait() })
}

// leave puts a request back for redelivery after a short delay: the queue
// or the ledger could not be reached, or the worker is stopping.
func (w *Worker) leave(j *job, err error) { w.leaveFor(j, err, 5*time.Second) }

// leaveFor is leave with the delay before redelivery.
func (w *Worker) leaveFor(j *job, err error, delay time.Duration) {
	if errors.Is(err, context.Canceled) {
		j.log.Info("request left for redelivery: worker stopping")
	} else {
		j.log.Warn("request left for redelivery", zap.Error(err))
	}
	if j.stopAlive != nil {
		j.stopAlive()
	}
	if nerr := j.msg.NakWithDelay(delay); nerr != nil {
		j.log.Warn("nak request", zap.Error(nerr))
	}
}

func (j *job) result(outcome string) *offboard.Result {
	return &offboard.Result{
		RequestID: j.req.RequestID, Tenant: j.t.name, MachineID: j.req.MachineID,
		ComputerDNSName: j.req.ComputerDNSName, Outcome: outcome, Attempts: j.attempts,
		RequestedBy: j.req.RequestedBy, Source: j.req.Source, RequestSeq: j.seq,
		Priority: j.prio, ReceivedAt: j.received, Attempt: j.req.AttemptOrFirst(),
	}
}

func (j *job) failed(code, message string, a *mde.Answer) *offboard.Result {
	r := j.result(offboard.OutcomeFailed)
	r.Error = offboard.Failed(code, message)
	if a != nil {
		r.Error.HTTPStatus = a.Status
		r.Error.APICode = a.APICode()
	}
	return r
}

func (j *job) withAction(outcome string, a mde.Action) *offboard.Result {
	r := j.result(outcome)
	r.MachineAction = a.Raw
	if r.MachineID == "" {
		r.MachineID = a.MachineID
	}
	return r
}

// process resolves the device and offboards it. An error means the request
// must be left for redelivery; every other end is a result.
func (w *Worker) process(ctx context.Context, j *job, permit *limiter.Permit) (*offboard.Result, error) {
	t := j.t
	if j.req.MachineID == "" {
		id, res, err := w.resolve(ctx, j)
		if err != nil || res != nil {
			return res, err
		}
		j.req.MachineID = id
	}
	if j.req.DryRun {
		return w.dryRun(ctx, j)
	}
	comment := j.req.Comment
	if comment == "" {
		var err error
		comment, err = t.Config.RenderComment(config.CommentData{
			RequestID: j.req.RequestID, Source: j.req.Source, RequestedBy: j.req.RequestedBy,
			Tenant: t.name, MachineID: j.req.MachineID, ComputerDNSName: j.req.ComputerDNSName,
		})
		if err != nil {
			return j.failed(offboard.CodeInternal, err.Error(), nil), nil
		}
	}

	unlock, ok := t.devices.tryLock(j.req.MachineID)
	if !ok {
		// Another request for this device is under way: give the permit
		// back while waiting, so other devices are not held up.
		permit.Release()
		permit = nil
		var err error
		if unlock, err = t.devices.lock(ctx, j.req.MachineID); err != nil {
			return nil, err
		}
	}
	defer unlock()

	// A call for this id may have been sent before a crash: look for the
	// action it created before sending another.
	if e := j.entry; e != nil && e.State == queue.StateCalling && e.MachineID == j.req.MachineID {
		res, err := w.findOwnAction(ctx, j, e.Started, comment)
		if err != nil || res != nil {
			return res, err
		}
	}
	next := &queue.Entry{State: queue.StateCalling, Seq: j.seq, MachineID: j.req.MachineID, Started: w.clock.Now().UTC()}
	if err := w.opts.Ledger.Put(ctx, t.name, j.req.RequestID, j.entry, next); err != nil {
		return nil, err
	}
	j.entry = next

	a, res, err := w.call(ctx, j, mde.APIOffboard, permit, func(ctx context.Context) (*mde.Answer, error) {
		return t.Client.Offboard(ctx, j.req.MachineID, comment)
	}, func(ctx context.Context) (*offboard.Result, error) {
		// The failed attempt may have created the action all the same.
		return w.findOwnAction(ctx, j, next.Started, comment)
	})
	if err != nil || res != nil {
		return res, err
	}
	switch a.Class {
	case mde.Success:
		action, err := mde.ParseAction(a.Body)
		if err != nil {
			return j.failed(offboard.CodeAPIError, "the API accepted the call but its answer is not a Machine Action: "+err.Error(), a), nil
		}
		// The service has been seen answering a duplicate with the pending
		// action instead of ActiveRequestAlreadyExists. Ours carries our
		// comment and was created after we sent the call (give or take the
		// clocks' skew).
		if action.Unfinished() && (action.RequestorComment != comment || action.Created().Before(next.Started.Add(-clockSkew))) {
			return j.withAction(offboard.OutcomeAlreadyPending, action), nil
		}
		return j.withAction(offboard.OutcomeCreated, action), nil
	case mde.AlreadyPending:
		return w.existingAction(ctx, j, a)
	}
	return j.failed(a.FailureCode, a.Error(), a), nil
}

// read makes a read call: any answer but success is the request's failed
// result, its message prefixed with what.
func (w *Worker) read(ctx context.Context, j *job, api, what string, do func(context.Context) (*mde.Answer, error)) (*mde.Answer, *offboard.Result, error) {
	a, res, err := w.call(ctx, j, api, nil, do, nil)
	if err != nil || res != nil {
		return nil, res, err
	}
	if a.Class != mde.Success {
		return nil, j.failed(a.FailureCode, what+a.Error(), a), nil
	}
	return a, nil, nil
}

// dryRun checks that the device exists, and calls nothing destructive.
func (w *Worker) dryRun(ctx context.Context, j *job) (*offboard.Result, error) {
	if j.req.ComputerDNSName != "" {
		return j.result(offboard.OutcomeDryRun), nil // resolve already read the device
	}
	a, res, err := w.read(ctx, j, mde.APIMachines, "", func(ctx context.Context) (*mde.Answer, error) {
		return j.t.Client.GetMachine(ctx, j.req.MachineID)
	})
	if err != nil || res != nil {
		return res, err
	}
	m, err := mde.ParseMachine(a.Body)
	if err != nil {
		return j.failed(offboard.CodeAPIError, err.Error(), a), nil
	}
	r := j.result(offboard.OutcomeDryRun)
	r.ComputerDNSName = m.ComputerDNSName
	return r, nil
}

// resolve finds the one device with the requested name.
func (w *Worker) resolve(ctx context.Context, j *job) (string, *offboard.Result, error) {
	a, res, err := w.read(ctx, j, mde.APIMachines, "", func(ctx context.Context) (*mde.Answer, error) {
		return j.t.Client.FindMachinesByName(ctx, j.req.ComputerDNSName)
	})
	if err != nil || res != nil {
		return "", res, err
	}
	all, err := mde.ParseMachines(a.Body)
	if err != nil {
		return "", j.failed(offboard.CodeAPIError, err.Error(), a), nil
	}
	// Only exact matches count, whatever the API's filter let through.
	var machines []mde.Machine
	for _, m := range all {
		if strings.EqualFold(strings.TrimSuffix(m.ComputerDNSName, "."), strings.TrimSuffix(j.req.ComputerDNSName, ".")) {
			machines = append(machines, m)
		}
	}
	switch len(machines) {
	case 0:
		return "", j.failed(offboard.CodeMachineNotFound, "no device is named "+offboard.Quote(j.req.ComputerDNSName), nil), nil
	case 1:
		if !offboard.ValidMachineID(machines[0].ID) {
			return "", j.failed(offboard.CodeAPIError, "the API gave a device id that is not 40 hexadecimal characters", nil), nil
		}
		return strings.ToLower(machines[0].ID), nil, nil
	}
	r := j.failed(offboard.CodeAmbiguousMachine, fmt.Sprintf("%d devices are named %s; give the machineId of the one to offboard", len(machines), offboard.Quote(j.req.ComputerDNSName)), nil)
	for _, m := range machines {
		r.Error.Candidates = append(r.Error.Candidates, offboard.Candidate{MachineID: m.ID, LastSeen: m.LastSeen, HealthStatus: m.HealthStatus})
	}
	return "", r, nil
}

// existingAction answers ActiveRequestAlreadyExists with the device's
// unfinished Offboard action.
func (w *Worker) existingAction(ctx context.Context, j *job, refused *mde.Answer) (*offboard.Result, error) {
	// A fresh action can be missing from lists for a moment: look again a
	// few times before saying so.
	for look := 0; ; look++ {
		actions, res, err := w.offboardActions(ctx, j)
		if err != nil || res != nil {
			return res, err
		}
		for _, a := range actions {
			if a.Unfinished() {
				return j.withAction(offboard.OutcomeAlreadyPending, a), nil
			}
		}
		if look >= w.retry.NotFoundCheck {
			return j.failed(offboard.CodeAPIError, "the API reports an offboard already pending, but lists no unfinished Offboard action for the device", refused), nil
		}
		if err := w.backoff(ctx, look+1); err != nil {
			return nil, err
		}
	}
}

// findOwnAction looks for the Offboard action a call of this request may
// have created since it was sent (after a crash, or an attempt whose answer
// was lost): one with our comment, created since then. Found, it is the
// request's result; not found (nil, nil), a call may be sent.
func (w *Worker) findOwnAction(ctx context.Context, j *job, since time.Time, comment string) (*offboard.Result, error) {
	actions, res, err := w.offboardActions(ctx, j)
	if err != nil || res != nil {
		return res, err
	}
	for _, a := range actions {
		if a.RequestorComment == comment && !a.Created().Before(since.Add(-clockSkew)) {
			j.log.Info("found the action of an earlier attempt", zap.String("action_id", a.ID))
			return j.withAction(offboard.OutcomeCreated, a), nil
		}
	}
	return nil, nil
}

// offboardActions lists the device's Offboard actions, newest first.
func (w *Worker) offboardActions(ctx context.Context, j *job) ([]mde.Action, *offboard.Result, error) {
	a, res, err := w.read(ctx, j, mde.APIMachineActions, "list the device's offboard actions: ", func(ctx context.Context) (*mde.Answer, error) {
		return j.t.Client.OffboardActions(ctx, j.req.MachineID)
	})
	if err != nil || res != nil {
		return nil, res, err
	}
	actions, err := mde.ParseActions(a.Body)
	if err != nil {
		return nil, j.failed(offboard.CodeAPIError, err.Error(), a), nil
	}
	// Newest first, whatever order the API used.
	slices.SortStableFunc(actions, func(a, b mde.Action) int { return b.Created().Compare(a.Created()) })
	return actions, nil, nil
}

// call makes one API call under the tenant's quota and repeats it as the
// answer's class says. It returns the last answer when it is success,
// already-pending or final; a failed result when retries ran out; an error
// when the request must be left for redelivery.
//
// recheck, if given, runs before a call is repeated after an attempt whose
// effect is unknown (no answer, a timeout, a 5xx): a result from it ends
// the call, so a lost answer never leads to a second action.
func (w *Worker) call(ctx context.Context, j *job, api string, permit *limiter.Permit,
	do func(context.Context) (*mde.Answer, error), recheck func(context.Context) (*offboard.Result, error),
) (*mde.Answer, *offboard.Result, error) {
	t := j.t
	var retries, notFound, throttles int
	refreshed := false
	for {
		if permit != nil && t.limits.PausedUntil().After(w.clock.Now()) {
			// Taken before a 429 paused the tenant: wait for the pause.
			permit.Release()
			permit = nil
		}
		if permit == nil {
			var err error
			if permit, err = w.acquire(ctx, t, api); err != nil {
				return nil, nil, err
			}
		}
		if api == mde.APIOffboard {
			j.attempts++
		}
		a, err := w.send(ctx, t, api, permit, do)
		permit = nil
		var tokErr *mde.TokenError
		errors.As(err, &tokErr)

		var reason string
		switch {
		case ctx.Err() != nil:
			return nil, nil, ctx.Err()
		case errors.Is(err, errQuotaJournal):
			// Nothing was sent; the request comes back once the journal
			// can be reached.
			return nil, nil, err
		case tokErr != nil && tokErr.Final:
			return nil, j.failed(offboard.CodeUnauthorized, "the login host refused the tenant's credentials: "+tokErr.Error(), nil), nil
		case err != nil:
			reason = "network"
			if tokErr != nil {
				reason = "token"
			}
			j.log.Warn("API call failed", zap.String("api", api), zap.Error(err))
		case a.Class == mde.Throttled:
			throttles++
			w.m.Throttled.WithLabelValues(t.name, api).Inc()
			t.limits.Pause(w.clock.Now(), a.RetryAfter)
			j.log.Warn("throttled: tenant paused", zap.String("api", api), zap.Duration("retry_after", a.RetryAfter))
			if throttles >= w.retry.Throttles {
				return nil, j.failed(offboard.CodeAPIError, fmt.Sprintf("throttled %d times in a row", throttles), a), nil
			}
			w.m.Retries.WithLabelValues(t.name, api, "throttled").Inc()
			continue // the pause is the wait
		case a.Class == mde.Retry:
			reason = "server_error"
			j.log.Warn("API call failed", zap.String("api", api), zap.String("answer", a.Error()))
		case a.Status == http.StatusUnauthorized && !refreshed && t.Cred != nil:
			// The cached token may have been revoked or the app's
			// credentials rotated: get a new token once and try again.
			refreshed = true
			j.log.Warn("API answered 401: getting a new token", zap.String("api", api))
			if err := t.Cred.Invalidate(); err != nil {
				//nolint:nilerr // the failure is the request's result
				return nil, j.failed(offboard.CodeUnauthorized, "the API refused the token and no new one could be had: "+err.Error(), a), nil
			}
			w.m.Retries.WithLabelValues(t.name, api, "token").Inc()
			continue
		case a.Class == mde.NotFound && api != mde.APIMachineActions && notFound < w.retry.NotFoundCheck:
			notFound++
			reason = "not_found"
		case a.Class == mde.NotFound:
			return &mde.Answer{Status: a.Status, Class: mde.Final, Body: a.Body, Err: a.Err, FailureCode: a.FailureCode}, nil, nil
		default:
			return a, nil, nil
		}
		retries++
		unknown := recheck != nil && (reason == "network" || reason == "server_error")
		if retries >= w.retry.Attempts+w.retry.NotFoundCheck || (reason != "not_found" && retries-notFound >= w.retry.Attempts) {
			if unknown { // the last attempt may have worked after all
				if res, err := recheck(ctx); err != nil || res != nil {
					return nil, res, err
				}
			}
			msg := "gave up after " + strconv.Itoa(retries) + " attempts"
			if err != nil {
				msg += ": " + err.Error()
			} else {
				msg += ": " + a.Error()
			}
			return nil, j.failed(offboard.CodeAPIError, msg, a), nil
		}
		w.m.Retries.WithLabelValues(t.name, api, reason).Inc()
		if err := w.backoff(ctx, retries); err != nil {
			return nil, nil, err
		}
		if unknown {
			if res, err := recheck(ctx); err != nil || res != nil {
				return nil, res, err
			}
		}
	}
}

// errQuotaJournal marks a call that was not sent because the shared quota
// journal could not be reached.
var errQuotaJournal = errors.New("quota journal unreachable: call not sent")

// send makes one call, places it in the windows and counts it: completed
// when it may have reached the server, released when it surely did not (no
// token). A panic in do still gives the permit back, so the quota never
// shrinks.
func (w *Worker) send(ctx context.Context, t *tenantRun, api string, permit *limiter.Permit,
	do func(context.Context) (*mde.Answer, error),
) (a *mde.Answer, err error) {
	// With a shared quota, the call is entered in the journal first, and
	// must end by the time the journal says its answer is due.
	due, err := permit.Record(ctx)
	if err != nil {
		permit.Release()
		return nil, fmt.Errorf("%w: %w", errQuotaJournal, err)
	}
	if !due.IsZero() {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, due.Sub(w.clock.Now()))
		defer cancel()
	}
	start := w.clock.Now()
	defer func() {
		var tokErr *mde.TokenError
		if errors.As(err, &tokErr) {
			permit.Release() // nothing was sent
			return
		}
		permit.CompleteNow() // also when do panicked
		status := "error"
		if a != nil {
			status = strconv.Itoa(a.Status)
			w.m.APILatency.WithLabelValues(t.name, api).Observe(w.clock.Since(start).Seconds())
		}
		w.m.APICalls.WithLabelValues(t.name, api, status).Inc()
	}()
	return do(ctx)
}

// acquire waits for quota.
func (w *Worker) acquire(ctx context.Context, t *tenantRun, api string) (*limiter.Permit, error) {
	start := w.clock.Now()
	defer func() { w.m.LimiterWait.WithLabelValues(t.name, api).Observe(w.clock.Since(start).Seconds()) }()
	return t.limits.API(api).Acquire(ctx)
}

// backoff waits before retry n: capped exponential with full jitter.
func (w *Worker) backoff(ctx context.Context, n int) error {
	d := w.retry.Base << min(n-1, 20)
	d = min(d, w.retry.Max)
	d = d/2 + rand.N(d/2+1)
	return sleepCtx(ctx, w.clock, d)
}

// finish records and publishes a request's result, then acks the request.
// If anything fails before the ack, the request comes back and is answered
// from the ledger or worked again; the result's message id keeps it single.
func (w *Worker) finish(ctx context.Context, j *job, res *offboard.Result) {
	res.CompletedAt = w.clock.Now().UTC()
	res.Attempts = j.attempts
	data, err := json.Marshal(res)
	if err != nil {
		w.leave(j, err)
		return
	}
	pctx, cancel := storeCtx(ctx)
	defer cancel()
	msgID := w.seqMsgID(j.t.name, j.seq)
	if j.checked {
		// Written over the entry this job holds: if another worker changed
		// it meanwhile, that one owns the request id.
		if err := w.opts.Ledger.Finish(pctx, j.t.name, res.RequestID, j.entry, j.seq, data); err != nil {
			w.leave(j, err)
			return
		}
		msgID = offboard.ResultMsgID(j.t.name, res.RequestID, res.Attempt)
	}
	if err := w.publish(pctx, j.t.name, j.msg, msgID, j.seq, res, data); err != nil {
		w.leave(j, err)
		return
	}
	w.startTracking(pctx, j, res)
	w.ack(pctx, j)
	fields := []zap.Field{zap.String("outcome", res.Outcome), zap.String("machine_id", res.MachineID), zap.Int("attempts", res.Attempts)}
	if res.Error != nil {
		fields = append(fields, zap.String("code", res.Error.Code), zap.String("error", res.Error.Message))
	}
	j.log.Info("request completed", fields...)
}

// storeCtx is the context results are stored and acked under: a stop must
// not cut it short (a result half-stored is worse than a stop a moment
// late), but it has its own bound.
func storeCtx(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
}

// replay answers a request id that already has a result from the ledger,
// without calling the API.
func (w *Worker) replay(ctx context.Context, j *job, e *queue.Entry) {
	var res offboard.Result
	if err := json.Unmarshal(e.Result, &res); err != nil {
		w.leave(j, fmt.Errorf("ledger result of %s: %w", j.req.RequestID, err))
		return
	}
	pctx, cancel := storeCtx(ctx)
	defer cancel()
	if err := w.publish(pctx, j.t.name, j.msg, offboard.ResultMsgID(j.t.name, res.RequestID, res.Attempt), e.Seq, &res, e.Result); err != nil {
		w.leave(j, err)
		return
	}
	w.startTracking(pctx, j, &res) // in case a crash came between result and tracking
	w.ack(pctx, j)
	j.log.Info("request answered from the ledger", zap.String("outcome", res.Outcome), zap.Uint64("first_seq", e.Seq))
}

// publish stores the result, and a dead letter if it failed.
func (w *Worker) publish(ctx context.Context, tenant string, msg jetstream.Msg, msgID string, seq uint64, res *offboard.Result, data []byte) error {
	s := w.opts.Settings.Subjects
	if err := queue.PublishResult(ctx, w.opts.JS, s.Result(tenant), msgID, data); err != nil {
		return err
	}
	code := ""
	if res.Error != nil {
		code = res.Error.Code
		if err := queue.PublishDead(ctx, w.opts.JS, s.Dead(tenant), msg, offboard.Seq{Epoch: w.epoch, N: seq}, code, res.Error.Message); err != nil {
			return err
		}
		w.m.DeadLetters.WithLabelValues(w.metricTenant(tenant), code).Inc()
	}
	w.m.Results.WithLabelValues(w.metricTenant(tenant), res.Outcome, code).Inc()
	return nil
}

func (w *Worker) seqMsgID(tenant string, seq uint64) string {
	return offboard.SeqResultMsgID(tenant, offboard.Seq{Epoch: w.epoch, N: seq})
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
// It comes before the ack, so a crash cannot lose it; a failure is logged,
// not fatal: the result stands.
func (w *Worker) startTracking(ctx context.Context, j *job, res *offboard.Result) {
	if !j.t.Config.Tracking.Enabled || len(res.MachineAction) == 0 {
		return
	}
	if err := w.track(ctx, j.t, res); err != nil {
		j.log.Warn("start tracking the action", zap.Error(err))
	}
}

func (w *Worker) ack(ctx context.Context, j *job) {
	if j.stopAlive != nil {
		j.stopAlive()
	}
	if err := j.msg.DoubleAck(ctx); err != nil {
		// The result is stored: a redelivery is answered from the ledger.
		j.log.Warn("ack request", zap.Error(err))
	}
}
