package worker

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/jonboulle/clockwork"
	"go.uber.org/zap"

	"github.com/contoso-secops/mde-offboard/internal/config"
	"github.com/contoso-secops/mde-offboard/internal/limiter"
	"github.com/contoso-secops/mde-offboard/internal/mde"
	"github.com/contoso-secops/mde-offboard/internal/queue"
	"github.com/contoso-secops/mde-offboard/offboard"
)

// This file holds the offboarding steps of a checked request: resolve the
// device, apply the guards, stop at a dry run, call, and find the action a
// lost answer created. Each step returns a result when it ends the request,
// an error when the request must be left for redelivery, or neither to go
// on.

// clockSkew is how far the API's clock and ours may disagree.
const clockSkew = 5 * time.Minute

// device is what the steps know of the device to offboard.
type device struct {
	id string
	// machine is the device as Defender reported it during this request
	// (a name lookup returns it); nil when not read. read is when.
	machine *mde.Machine
	read    time.Time
	// served is the API's clock when it answered that read (its Date;
	// zero: it gave none).
	served time.Time
	// policy is the guards applied, for the result (nil: the tenant has
	// none), as last applied.
	policy *offboard.Policy
}

// guardMaxAge is how old the device as read for the guards may be when
// the offboard call goes out. A request that waited longer (for its
// device, its budget, a 429's pause, a backoff) reads it again: the
// guards judge the device as Defender reports it now.
const guardMaxAge = time.Second

// process resolves the device, applies the tenant's guards and offboards
// it. An error means the request must be left for redelivery; every other
// end is a result, which records the guards applied (policy) once they
// were.
func (w *Worker) process(ctx context.Context, j *job, permit *limiter.Permit) (*offboard.Result, error) {
	dev := device{id: j.req.MachineID}
	if dev.id == "" {
		dev.id = j.pinned()
	}
	if dev.id == "" {
		res, err := w.resolve(ctx, j, &dev)
		if wd := (*withdrawnError)(nil); errors.As(err, &wd) {
			// Its campaign was cancelled while it waited for the read.
			return w.withdrawnWaiting(ctx, j, wd)
		}
		if err != nil || res != nil {
			return res, err
		}
	}
	j.req.MachineID = dev.id
	if e := j.entry; e != nil && e.State == queue.StateCalling && e.MachineID == j.req.MachineID {
		j.earlierCall, j.earlierSince, j.earlierComment = e.Latest(), e.CalledSince(), e.Comment
	} else if f, ok := j.failedAfterCalls(); ok && f.MachineID == j.req.MachineID {
		// A retry of a request answered failed after calls of unknown
		// effect (api_error: an action lists did not show yet): the
		// action one of them made may have finished since, and the API
		// would take a new call. Looked for first, as after a crash, by
		// the comment they went out with where the entry names it.
		j.earlierCall, j.earlierSince, j.earlierComment = j.entry.Latest(), f.Since, j.entry.Comment
	} else if j.entryGone && !j.stored.IsZero() {
		// Delivered again with no entry for its id, and no result out
		// (answeredBefore): an earlier delivery may have called and left
		// (an answer lost, then its look for the action refused), its
		// "calling" entry gone since. Taken for a new request, it called
		// the device again: the API refused it, or, the first action
		// finished, made a second. The earlier call went out after the
		// request was stored, and its action is looked for from then.
		j.earlierCall, j.earlierSince = j.stored, j.stored
	}
	// A call of this id may have gone out before (a crash, or an answer
	// lost and the request left): the action it created is the answer,
	// whatever the guards say of the device now. So it is for a dry run
	// of the id too: answered dry_run, it would store that over the
	// call's entry, and the request whose call made the action would be
	// answered dry_run from the ledger, its action never reported.
	if j.calledBefore() {
		if res, err := w.lookForEarlier(ctx, j); err != nil || res != nil {
			return res, err
		}
	}
	if j.entryGone {
		// No action of an earlier call showed: a cancel of the request's
		// campaign, not applied before the look (answered), applies now,
		// and the calls the result keeps (keptCalls) send a retry to look
		// again first.
		if res := w.cancelled(j); res != nil {
			return res, nil
		}
	}
	pol, rule, why, res, err := w.judge(ctx, j, &dev)
	dev.policy = pol
	switch {
	case rule != "":
		res, err = w.refused(j, &dev, rule, why)
	case w.unreadAfterCall(j, res):
		res, err = nil, errUnreadAfterLostAnswer
	}
	if err == nil && res == nil {
		res, err = w.act(ctx, j, &dev, permit)
	}
	if wd := (*withdrawnError)(nil); errors.As(err, &wd) {
		res, err = w.withdrawnWaiting(ctx, j, wd)
	}
	if res != nil && dev.policy != nil {
		res.Policy = dev.policy
	}
	if res != nil && res.ComputerDNSName == "" && dev.machine != nil {
		// The device as the guards read it names it, where the request
		// and the action did not: no read is made for the name alone.
		res.ComputerDNSName = apiText(dev.machine.ComputerDNSName)
	}
	return res, err
}

// pinned is the device a request by name is pinned to ("": none, the
// name is resolved): the one an earlier call of its request id went to,
// by the id's "calling" entry. The name is not looked up again, as it may
// now name another device or several (a device re-onboarded, a name
// reused): the look for the earlier call's action runs on that device,
// and if the request goes on, it goes on for that device, judged by the
// guards as it is now. One request never offboards two devices.
//
// An entry written by another message of the request id (the id sent
// again; it is worked on only once the other's lease has run out) pins
// it only when it names the same computer: the request id is the
// idempotency key, so the same id and name is the same request, whose
// call may have gone out; another name is other content under a reused
// id, and its device is not offboarded for this message, as a request by
// id counts only an entry for its own device (process). An entry of an
// earlier release without the name pins only its own message. A dry run
// is pinned alike: the earlier call's action is its answer too.
func (j *job) pinned() string {
	if f, ok := j.failedAfterCalls(); ok && j.req.MachineID == "" && offboard.ValidMachineID(f.MachineID) && mde.SameName(f.ComputerDNSName, j.req.ComputerDNSName) {
		j.log.Info("retry by name kept on the device its earlier calls went to: the name is not looked up again", zap.String("machine_id", f.MachineID))
		return f.MachineID
	}
	e := j.entry
	if j.req.MachineID != "" || e == nil || e.State != queue.StateCalling || !offboard.ValidMachineID(e.MachineID) {
		return ""
	}
	if e.Seq != j.seq && (e.ComputerDNSName == "" || !mde.SameName(e.ComputerDNSName, j.req.ComputerDNSName)) {
		return ""
	}
	j.log.Info("request by name kept on the device its earlier call went to: the name is not looked up again", zap.String("machine_id", e.MachineID))
	return e.MachineID
}

// failedAfterCalls is what the request id's ledger entry holds of
// offboard calls made for it when it holds a failed result (a retry of a
// request answered api_error after calls whose effect was unknown, say):
// the calls the entry kept from before its result's message
// (Entry.Calls), or else those the result counts, made since it was
// received. false when the entry holds no such result.
func (j *job) failedAfterCalls() (*queue.EarlierCalls, bool) { return callsOfFailed(j.entry) }

// callsOfFailed is failedAfterCalls of the ledger entry e.
func callsOfFailed(e *queue.Entry) (*queue.EarlierCalls, bool) {
	if e == nil || e.State != queue.StateDone || len(e.Result) == 0 {
		return nil, false
	}
	var r offboard.Result
	if json.Unmarshal(e.Result, &r) != nil || r.Outcome != offboard.OutcomeFailed {
		return nil, false
	}
	if c := e.Calls; c != nil && offboard.ValidMachineID(c.MachineID) {
		return c, true
	}
	if r.Attempts == 0 || r.MachineID == "" {
		return nil, false
	}
	return &queue.EarlierCalls{MachineID: r.MachineID, ComputerDNSName: r.ComputerDNSName, Since: r.ReceivedAt}, true
}

// keptCalls is what a failed result of this message keeps in its ledger
// entry of the offboard calls of its request id made before it, whose
// action it did not find (nil: none): those of the entry it read (an
// earlier delivery's "calling" entry, or a failed result's calls), on
// its device. Left out, a retry answered failed before any call of its
// own (its look for their action refused, its credentials rejected)
// stored a result that counts no call, and the next retry, taking the
// id for one never called, made a second action for the device.
func (j *job) keptCalls() *queue.EarlierCalls {
	if j.calledBefore() && j.earlierCalls == 0 {
		return &queue.EarlierCalls{MachineID: j.req.MachineID, ComputerDNSName: j.req.ComputerDNSName, Since: j.earlierSince}
	}
	if f, ok := j.failedAfterCalls(); ok {
		// Answered before it looked (a cancel, a device it was not
		// kept on): its entry is still the failed result read.
		return f
	}
	return nil
}

// withdrawnWaiting answers a request whose campaign was cancelled while
// it waited in the worker: cancelled, no call. Its room, given back for
// the wait, is taken again to store the result.
func (w *Worker) withdrawnWaiting(ctx context.Context, j *job, wd *withdrawnError) (*offboard.Result, error) {
	j.log.Info("request withdrawn while it waited: its campaign was cancelled")
	if p, _ := ctx.Value(placeKey{}).(*place); p != nil {
		if err := p.take(ctx); err != nil {
			return nil, err
		}
	}
	return wd.res, nil
}

// calledBefore says whether the request id's ledger entry, as this
// message read it, says a call for this device may have gone out before
// it: an earlier delivery, or a replica that stopped (earlierCall).
func (j *job) calledBefore() bool { return !j.earlierCall.IsZero() }

// mayHaveCalled says whether an action of this request may exist that
// lists may not show yet: a call of this message whose answer was lost, or
// one made before it less than Options.ActionShowsWithin ago (an entry says only
// that a call was about to go out; past that time, the look for its
// action that process made settles it).
func (w *Worker) mayHaveCalled(j *job) bool {
	return j.mayHaveActed || j.calledBefore() && w.clock.Since(j.earlierCall) < w.opts.ActionShowsWithin
}

// errPausedWhileWaiting leaves a request whose tenant and priority an
// operator paused while it waited in the worker: it goes back to the
// stream, where it waits for the resume like the requests not yet taken.
var errPausedWhileWaiting = errLeave("an operator paused the tenant while the request waited: back to the stream until resumed")

// errControlsUnread leaves a request about to be sent while the controls
// have not been read since the connection to NATS came back, or while
// their watch did not bring an entry the bucket holds (its server lost):
// a pause written meanwhile may hold it. It goes back to the stream, and
// the tenant loop takes nothing until the controls are read anew.
var errControlsUnread = errLeave("the controls have not been read since NATS came back, or their watch missed an entry: back to the stream until they are")

// errBudgetLowered leaves a request whose budget slot no longer fits the
// budget in force: an operator lowered it (offboardctl budget) while the
// request waited with its slot. Its slot is given back, and it comes back
// from the stream when the budget has room.
var errBudgetLowered = errLeave("the budget was lowered while the request waited: back to the stream until it has room")

// errBudgetSet leaves a request that holds no budget slot because its
// tenant had no budget when it would have taken one, and has one now: an
// operator set it (offboardctl budget) while the request waited. Its call
// would create an action the budget does not count. It comes back from
// the stream and takes a slot, or waits with the held requests.
var errBudgetSet = errLeave("a budget was set while the request waited: back to the stream to take a slot of it")

// errRefusedAfterLostAnswer leaves a request whose device a guard refuses
// now, after an attempt whose answer was lost: no call goes out again, and
// the redelivery looks for the action that attempt may have created
// before it applies the guards.
var errRefusedAfterLostAnswer = errLeave("a guard refuses the device now, and an earlier call's answer was lost: taken again to look for its action")

// beforeCall checks, as an offboard call is about to go out, what may have
// changed while the request waited in the worker (for its device, its
// budget, its quota, a 429's pause or a backoff): an operator's pause of
// its tenant and priority, a budget lowered below the slots taken or set
// on a tenant that had none (the request goes back to the stream), a cancel
// of its campaign (it is answered cancelled), and the device, read again
// for the guards when the read they judged is older than guardMaxAge;
// that read can wait too, so the controls are checked again after it.
// A result or an error means no call.
//
// After an attempt whose answer was lost (j.mayHaveActed) an action may
// exist: a cancel no longer applies (as for a request delivered again
// after such a call), and a guard's refusal sends the request back to
// look for that action rather than answer it refused.
func (w *Worker) beforeCall(ctx context.Context, j *job, dev *device) (*offboard.Result, error) {
	if res, err := w.lookAgain(ctx, j); err != nil || res != nil {
		return res, err
	}
	if res, err := w.controlsBeforeCall(j); err != nil || res != nil {
		return res, err
	}
	if dev.policy == nil || !j.needsDevice() || !guardReadStale(w.clock, dev.read) {
		return nil, nil
	}
	j.log.Info("device read again for the guards: the request waited", zap.Duration("since_read", sinceBoth(w.clock, dev.read)))
	dev.machine = nil
	pol, rule, why, res, err := w.judge(ctx, j, dev)
	if pol != nil {
		dev.policy = pol
	}
	if rule != "" {
		return w.refused(j, dev, rule, why)
	}
	if w.unreadAfterCall(j, res) {
		return nil, errUnreadAfterLostAnswer
	}
	if err != nil || res != nil {
		return res, err
	}
	// The read may have waited (for the machines quota, a 429's pause, a
	// backoff): what an operator changed meanwhile is checked again.
	return w.controlsBeforeCall(j)
}

// lookAgain looks again for the action an earlier call of the request
// may have made (process), or an attempt of this message whose answer was
// lost (recheckLost), as an offboard attempt is about to go out, when the
// last look came too soon after that call to be sure of it (lists may not
// have shown the action yet) and the request waited since (for its
// device, its budget, its quota, a 429's pause, a backoff): the action
// may have shown meanwhile, and finished, and the API refuses a second
// offboard only while the first is pending. Found, it is the request's
// result, and no attempt goes out.
func (w *Worker) lookAgain(ctx context.Context, j *job) (*offboard.Result, error) {
	switch {
	case w.lookedTooSoon(j.earlierCall, j.lookedAt):
		j.log.Info("the earlier call's action looked for again: the request waited since the last look")
		return w.lookForEarlier(ctx, j)
	case w.lookedTooSoon(j.lostAt, j.lostLookedAt):
		j.log.Info("the action of an attempt whose answer was lost looked for again: the request waited since the last look")
		comment, err := w.comment(j)
		if err != nil {
			return j.failed(offboard.CodeInternal, err.Error(), nil), nil
		}
		return w.recheckLost(ctx, j, j.lostSince, comment)
	}
	return nil, nil
}

// lookedTooSoon says whether the last look (at looked) for the action of
// a call (at called) found none too soon after the call to be sure of it,
// and the request waited since: the action is to be looked for again.
// Zero times: no such call, or no such look.
func (w *Worker) lookedTooSoon(called, looked time.Time) bool {
	return !called.IsZero() && !looked.IsZero() && looked.Sub(called) < w.opts.ActionShowsWithin &&
		sinceBoth(w.clock, looked) > guardMaxAge
}

// recheckLost looks for the action an attempt of this message whose
// answer was lost may have made (created since since, the "calling"
// entry's start), a few times (lookForOwnAction), and notes when it found
// none (lostSince, lostLookedAt): an attempt that waits after that look
// looks again before it goes out (lookAgain).
func (w *Worker) recheckLost(ctx context.Context, j *job, since time.Time, comment string) (*offboard.Result, error) {
	res, err := w.lookForOwnAction(ctx, j, since, comment)
	if err == nil && res == nil {
		j.lostSince, j.lostLookedAt = since, w.clock.Now()
	}
	return res, err
}

// lookForEarlier looks for the action an earlier call of the request may
// have made (calledBefore), and notes when it found none (lookedAt). Lists
// may not show an action made less than ActionShowsWithin ago: it is
// looked for a few times then, before a call that the API would not
// refuse if the device has taken the action already.
func (w *Worker) lookForEarlier(ctx context.Context, j *job) (*offboard.Result, error) {
	comment, err := w.comment(j)
	if err != nil {
		return j.failed(offboard.CodeInternal, err.Error(), nil), nil
	}
	look := w.findOwnAction
	if w.mayHaveCalled(j) && !j.entryGone {
		// A request delivered again with no entry (entryGone) is not
		// known to have been called at all: most such were never worked
		// on (fetched by a worker that died, lost at a NATS outage), and
		// one look settles it. Looked for a few times with backoffs, each
		// such request stored less than a minute ago waited seconds
		// before its call, and the last results after a NATS outage came
		// that much later. An action of a call whose entry went meanwhile
		// that lists do not show yet gets the API's refusal of a second
		// call (already_pending), not a second action.
		look = w.lookForOwnAction
	}
	res, err := look(ctx, j, j.earlierSince, comment)
	if res != nil && res.Outcome == offboard.OutcomeCreated && j.attempts == j.throttled && !j.mayHaveActed {
		// The action is the earlier call's (none of this message's
		// attempts may have made one): that call counts in the result's
		// attempts, the offboard calls made for the request.
		j.earlierCalls = 1
	}
	if err == nil && res == nil {
		j.lookedAt = w.clock.Now()
		if !j.lostLookedAt.IsZero() && !j.earlierSince.After(j.lostSince) {
			// It looked for actions made since the earlier call, and so
			// for those of this message's attempts whose answer was lost
			// (lookAgain): not looked for again as the attempt goes out.
			j.lostLookedAt = j.lookedAt
		}
	}
	return res, err
}

// controlsBeforeCall checks the operators' controls as an offboard call
// is about to go out (beforeCall): a cancel of its campaign, a pause of
// the request's tenant and priority, a budget lowered or set.
func (w *Worker) controlsBeforeCall(j *job) (*offboard.Result, error) {
	if !w.controlsFresh() {
		return nil, errControlsUnread
	}
	// A cancel first: no call goes out after either, but a request sent
	// back for a pause would wait in the stream behind it, its cancel
	// unanswered, when the cancel landed before it got there.
	if res := w.cancelled(j); res != nil {
		if w.mayHaveCalled(j) {
			// The action may exist and not show yet: the cancel is
			// not the answer, but no call goes out after it either.
			return nil, errCancelledAfterLostAnswer
		}
		return res, nil
	}
	if w.opts.Control.Paused(j.t.name, j.prio) {
		return nil, errPausedWhileWaiting
	}
	if j.t.budget.overdrawn(w) {
		// Also after an attempt whose answer was lost: its slot counts
		// whatever comes, but a repeat could create a second action
		// over the budget if the first made none. The request, taken
		// again, looks for its action before it needs a slot.
		return nil, errBudgetLowered
	}
	if !j.budgetSlot && j.t.budget.active() {
		// As above after an attempt whose answer was lost: taken again,
		// the request looks for its action before it needs a slot.
		return nil, errBudgetSet
	}
	return nil, nil
}

// errCancelledAfterLostAnswer leaves a request whose campaign was
// cancelled after a call of it that may have acted (an answer lost, a
// 5xx), as errRefusedAfterLostAnswer does for a guard's refusal: no call
// goes out again, and taken again, the request looks for that call's
// action; with none shown by the time an action takes to show, it is
// answered cancelled.
var errCancelledAfterLostAnswer = errLeave("the request's campaign was cancelled, and an earlier call's answer was lost: taken again to look for its action")

// errUnlistedAfterCall leaves a request whose device's actions could not
// be listed to look for the action a call of it may have made.
var errUnlistedAfterCall = errLeave("the device's actions could not be listed, and a call of the request may have created one: taken again to look for it")

// errUnreadAfterLostAnswer leaves a request whose device could not be read
// (for the guards, or for a dry run) after a call of it whose answer was
// lost, as errRefusedAfterLostAnswer does for a refusal.
var errUnreadAfterLostAnswer = errLeave("the device could not be read, and an earlier call's answer was lost: taken again to look for its action")

// unreadAfterCall says whether res, the failed result of a read of the
// device (an intermittent 404, a read failing; nil: none), comes while a
// call of the request may have created an action that lists do not show
// yet (mayHaveCalled): an earlier delivery's or a stopped replica's, or
// an attempt of this one whose answer was lost. The request is then not
// answered failed, its device perhaps offboarded, but taken again to look
// for that action (errUnreadAfterLostAnswer).
func (w *Worker) unreadAfterCall(j *job, res *offboard.Result) bool {
	if res == nil || !w.mayHaveCalled(j) {
		return false
	}
	j.log.Info("device not read after a call of the request that may have acted", zap.String("code", res.Error.Code))
	return true
}

// refused answers a device a guard refuses: blocked, unless a call of the
// request may have created an action that lists do not show yet; then
// the request is taken again later to look for it, until the action
// would have shown.
func (w *Worker) refused(j *job, dev *device, rule, why string) (*offboard.Result, error) {
	if w.mayHaveCalled(j) {
		return nil, errRefusedAfterLostAnswer
	}
	return w.blocked(j, dev, rule, why), nil
}

// act offboards a device that passed the guards, or stops at a dry run.
func (w *Worker) act(ctx context.Context, j *job, dev *device, permit *limiter.Permit) (*offboard.Result, error) {
	if j.req.DryRun {
		return w.dryRun(ctx, j, dev)
	}
	comment, err := w.comment(j)
	if err != nil {
		return j.failed(offboard.CodeInternal, err.Error(), nil), nil
	}
	unlock, permit, err := w.lockDevice(ctx, j, permit)
	if err != nil {
		return nil, err
	}
	defer unlock()
	end, permit, err := w.reserveBudget(ctx, j, permit)
	if err != nil {
		if permit != nil {
			permit.Release()
		}
		return nil, err
	}
	defer end(nil, errNotFinished) // a panic: ignored once ended
	res, err := w.offboard(ctx, j, dev, comment, permit)
	end(res, err)
	return res, err
}

// comment is the comment of the request's earlier call, if its entry
// names one, else the request's comment, or the tenant's template's. The
// earlier call's comment comes first: its action is found by it, also
// when that call went out from a replica whose tenants file rendered
// another (a rolling update that changed the template), where the
// template's would miss it and offboard the device again once its
// action finished; and a repeat of the call carries the same.
func (w *Worker) comment(j *job) (string, error) {
	if j.earlierComment != "" {
		return j.earlierComment, nil
	}
	if j.req.Comment != "" {
		return j.req.Comment, nil
	}
	return j.t.Config.RenderComment(config.CommentData{
		RequestID: j.req.RequestID, Source: j.req.Source, RequestedBy: j.req.RequestedBy,
		Tenant: j.t.name, MachineID: j.req.MachineID, ComputerDNSName: j.req.ComputerDNSName,
	})
}

// lockDevice waits until no other request of this process works on the
// device. While it waits it gives the permit back, so other devices are
// not held up; the permit returned may be nil.
func (w *Worker) lockDevice(ctx context.Context, j *job, permit *limiter.Permit) (func(), *limiter.Permit, error) {
	if unlock, ok := j.t.devices.tryLock(j.req.MachineID); ok {
		return unlock, permit, nil
	}
	if permit != nil {
		permit.Release()
	}
	if err := w.claimBeforeWaiting(ctx, j); err != nil {
		return nil, nil, err
	}
	unlock, err := unlessCancelled(ctx, w, j, func(ctx context.Context) (func(), error) {
		return asideFor(ctx, func(ctx context.Context) (func(), error) { return j.t.devices.lock(ctx, j.req.MachineID) }, func(unlock func()) { unlock() })
	})
	return unlock, nil, err
}

// recordWithinSlot enters an offboard attempt in the quota journal
// (Worker.record); its answer is due by the journal's due time or the end
// of the budget slot's lease, whichever comes first: no attempt may
// outlast the slot.
func (w *Worker) recordWithinSlot(ctx context.Context, j *job, p *limiter.Permit) (time.Time, error) {
	due, err := w.record(ctx, j, p)
	if !j.slotDue.IsZero() && (due.IsZero() || j.slotDue.Before(due)) {
		due = j.slotDue
	}
	return due, err
}

// offboard records the call in the ledger, then sends it.
func (w *Worker) offboard(ctx context.Context, j *job, dev *device, comment string, permit *limiter.Permit) (*offboard.Result, error) {
	if permit == nil {
		// Its place went elsewhere, or it gave its permit back while it
		// waited: the "calling" entry is written as the call goes out,
		// not before a wait.
		var err error
		if permit, err = w.offboardPermit(ctx, j); err != nil {
			return nil, err
		}
		defer permit.Release() // a panic before the call; once spent, nothing
	}
	if res, err := w.beforeCall(ctx, j, dev); err != nil || res != nil {
		permit.Release() // no call: its place is given back
		return res, err
	}
	// When the entry was last written as this message's: calling writes
	// it at once, and may then wait for the call's quota journal entry (a
	// 429's pause landing meanwhile).
	owned := w.clock.Now()
	next, err := w.calling(ctx, j, comment, permit)
	if err != nil {
		permit.Release() // no call: its place is given back
		return nil, err
	}
	v, res, err := w.caller.call(ctx, j, callSpec{
		api: mde.APIOffboard,
		do:  offboardAttempt(j, comment),
		recheck: func(ctx context.Context) (*offboard.Result, error) {
			// The failed attempt may have created the action all the same;
			// a repeat while lists do not show it yet relies on the API
			// refusing a second offboard, which it does only while the
			// first is pending: looked for a few times first.
			return w.recheckLost(ctx, j, next.Started, comment)
		},
		again:   func(ctx context.Context) (*offboard.Result, error) { return w.beforeAttempt(ctx, j, dev, &owned) },
		acquire: func(ctx context.Context) (*limiter.Permit, error) { return w.offboardPermit(ctx, j) },
		record:  func(ctx context.Context, p *limiter.Permit) (time.Time, error) { return w.recordWithinSlot(ctx, j, p) },
	}, permit)
	if err != nil || res != nil {
		return res, err
	}
	switch v.Class {
	case mde.Success:
		action, err := mde.ParseAction(v.Body)
		if err == nil && !action.OffboardOf(j.req.MachineID) {
			// Not the call's action, nor one handed back for the device:
			// looked for as for an answer that is no action at all.
			err = errNotDevicesOffboard
		}
		if err != nil {
			return w.acceptedUnread(ctx, j, v, next.Started, comment, err)
		}
		// The service has been seen answering a duplicate with the pending
		// action instead of ActiveRequestAlreadyExists. An action this
		// process answered created for another request is that one's,
		// handed back, whatever its comment and times say (it may carry
		// the same comment: a campaign's, a CMDB's fixed text).
		if j.t.created.forAnother(action.ID, j.req.RequestID) ||
			action.Unfinished() && handedBack(action, comment, reachedAPI(v, next.Started, w.clock.Now())) {
			return j.withAction(offboard.OutcomeAlreadyPending, action), nil
		}
		return w.ownAction(j, action), nil
	case mde.AlreadyPending:
		return w.existingAction(ctx, j, v, next.Started, comment)
	}
	return j.failed(v.FailureCode, v.Error(), v), nil
}

// errNotDevicesOffboard is an accepted offboard answered with a Machine
// Action of another device, or of another type.
var errNotDevicesOffboard = errors.New("it is an action of another device or type")

// offboardAttempt is one offboard attempt of the request (callSpec.do).
// An attempt that panics may have reached the API and acted: it says so
// (j.mayHaveActed) as the panic goes up, so that the request's budget
// slot counts (reserveBudget) and its "calling" entry stays.
func offboardAttempt(j *job, comment string) func(context.Context) *mde.Verdict {
	return func(ctx context.Context) *mde.Verdict {
		returned := false
		defer func() {
			if !returned { // panicked
				j.mayHaveActed = true
			}
		}()
		v := j.t.Client.Offboard(ctx, j.req.MachineID, comment)
		returned = true
		return v
	}
}

// beforeAttempt runs just before each offboard attempt goes out
// (callSpec.again): the checks before a call, then those of a call that
// waited (a 429's pause, a backoff): its budget slot and its "calling"
// entry must outlast the attempt, and the entry is written again when
// the attempt comes ownedFor or more after it was last written as this
// message's (at owned, which it moves on). An entry that would not
// outlast the attempt (callingRunsOut) is written anew, started now,
// when no attempt of this message may have acted: the call goes on, its
// count of 429s kept. After one that may have (a 5xx, an answer lost),
// the entry's start bounds the look for that attempt's action, and the
// request goes back to the stream to look for it.
func (w *Worker) beforeAttempt(ctx context.Context, j *job, dev *device, owned *time.Time) (*offboard.Result, error) {
	if res, err := w.beforeCall(ctx, j, dev); err != nil || res != nil {
		return res, err
	}
	if w.slotRunsOut(j) {
		return nil, errSlotRunsOut
	}
	started := j.entry.Started
	switch runsOut := w.callingRunsOut(j); {
	case runsOut && j.mayHaveActed:
		return nil, errCallingRunsOut
	case runsOut:
		started = w.clock.Now().UTC()
	case sinceBoth(w.clock, *owned) < ownedFor:
		return nil, nil
	}
	at := w.clock.Now()
	if err := w.stillCalling(ctx, j, started); err != nil {
		return nil, err
	}
	*owned = at
	return nil, nil
}

// ownedFor is how long after this message wrote its "calling" entry an
// attempt goes out without writing it again (stillCalling). Another
// replica takes a request up only once this process's presence has
// lapsed (15 s), which a process that wrote its entry a moment ago, by
// its own clock, cannot have let happen; a process frozen meanwhile
// finds, thawed, that its clock has moved on (sinceBoth).
const ownedFor = time.Second

// guardReadStale says whether the device as read at read for the guards
// is too old to judge by now: older than guardMaxAge by either clock, as
// a machine suspended right after the read has a monotonic clock that
// counted none of its sleep.
func guardReadStale(clock clockwork.Clock, read time.Time) bool {
	return sinceBoth(clock, read) > guardMaxAge
}

// sinceBoth is the time since t by the monotonic clock or by the wall
// clock, whichever is longer: the monotonic clock stands still while the
// machine is suspended, the wall clock moves on (and may step either way).
func sinceBoth(clock clockwork.Clock, t time.Time) time.Duration {
	now := clock.Now()
	return max(now.Sub(t), now.Round(0).Sub(t.Round(0)))
}

// stillCalling writes the request's "calling" entry again, as it stands
// but for its start (started), before an attempt that comes ownedFor or
// more after the entry was last written (compare-and-swap over the entry
// this message wrote). An attempt may come long after it: a 429's pause
// (also for the first attempt, when the 429 of another request came
// between the entry and the call), a backoff, a token refreshed; and the
// process may have been frozen meanwhile (a stopped container, a paused
// VM): past its presence's lease another replica takes the request up as
// a crashed one's, writes its own entry and may call. Then the entry is
// not this message's any more, and the attempt is not sent: the request
// goes back to the stream and is answered from the ledger.
func (w *Worker) stillCalling(ctx context.Context, j *job, started time.Time) error {
	next := *j.entry
	next.Started = started
	err := w.opts.Ledger.Put(ctx, j.t.name, j.req.RequestID, j.entry, &next)
	if errors.Is(err, queue.ErrConflict) {
		j.log.Warn("the request's ledger entry changed while its call waited: another worker took it up; not sent")
		return errTakenOver
	}
	if err != nil {
		return err
	}
	j.entry = &next
	return nil
}

// slotRunsOut says whether an offboard attempt sent now could still be
// under way when the request's budget slot comes due: it held the slot
// through 429s' pauses and backoffs. Other replicas count the slot as a
// creation at its due time and ignore its end written later, so an action
// made after it would count from before it was made, and their window
// would free early.
func (w *Worker) slotRunsOut(j *job) bool {
	return !j.slotDue.IsZero() && w.clock.Now().Add(j.t.Client.Timeout()).After(j.slotDue)
}

// callingRunsOut says whether an offboard attempt sent now could still be
// under way when the request's "calling" entry is CallingLease old, by
// this clock or, callingSkew ahead, another process's. Other messages of
// the id, and other processes' deliveries of this one, then take its call
// as ended and may make their own (answered, callElsewhere): a second
// call while this one is out. An attempt can come that late after 429s'
// pauses of up to an hour each, and backoffs; stillCalling's rewrite
// keeps the entry's start, which the look for an action the call may
// have made relies on, unless no attempt may have acted (beforeAttempt).
func (w *Worker) callingRunsOut(j *job) bool {
	return w.clock.Since(j.entry.Started)+j.t.Client.Timeout()+callingSkew >= w.opts.CallingLease
}

// callingSkew is how far the clocks of the processes that read the
// ledger are taken to differ at most.
const callingSkew = time.Minute

// errCallingRunsOut leaves a request whose "calling" entry would reach
// the calling lease before its next attempt could end (callingRunsOut),
// after an attempt that may have acted: no attempt goes out. Taken again,
// the request is a call cut off: its action is looked for, and a new
// entry is written before its next attempt.
var errCallingRunsOut = errLeave("the ledger's calling lease would run out before the call could end: back to the stream, to look for its action and write a new entry")

// errSlotRunsOut leaves a request whose budget slot's lease would run out
// before its next attempt could end (slotRunsOut): no attempt goes out.
// The slot is given back, or counts if an earlier attempt may have acted
// (reserveBudget), and the request comes back from the stream to take a
// new one; taken again after such an attempt, it looks for its action
// first.
var errSlotRunsOut = errLeave("the budget slot's lease would run out before the call could end: back to the stream to take a new slot")

// errTakenOver leaves a request whose ledger entry another worker wrote
// while this one's call waited.
var errTakenOver = errLeave("another worker took the request up while its call waited: not sent; taken again to answer from the ledger")

// offboardPermit waits for the offboard call's permit; a fresh request
// claims its id first. A cancel of its campaign ends the wait
// (unlessWithdrawn).
func (w *Worker) offboardPermit(ctx context.Context, j *job) (*limiter.Permit, error) {
	if p, _ := j.t.limits.API(mde.APIOffboard).TryAcquire(w.clock.Now()); p != nil {
		return p, nil
	}
	if err := w.claimBeforeWaiting(ctx, j); err != nil {
		return nil, err
	}
	// The wait ends when the worker stops taking requests (untilStop):
	// the request goes back to the stream rather than hold the shutdown.
	pctx, cancel := untilStop(ctx)
	defer cancel()
	return unlessCancelled(pctx, w, j, func(ctx context.Context) (*limiter.Permit, error) {
		return w.caller.acquire(ctx, j.t, mde.APIOffboard, j.prio == offboard.Bulk)
	})
}

// record enters the offboard call's permit in the quota journal, which
// waits when the windows have no room for it any more: a 429's pause, or
// a place another replica took, landing after the permit was taken. A
// cancel of the request's campaign ends that wait, as it ends the wait
// for the permit (unlessCancelled), and so does a stop (untilStop).
func (w *Worker) record(ctx context.Context, j *job, p *limiter.Permit) (time.Time, error) {
	ctx, cancel := untilStop(ctx)
	defer cancel()
	return unlessCancelled(ctx, w, j, p.Record)
}

// calling writes in the ledger, before the call goes out, that a call for
// this id and device is about to be sent and when, over the entry this
// message read or wrote (compare-and-swap: if another message took the
// id meanwhile, this one does not call). The call's entry in the quota
// journal, which must be written before the call too, is written
// meanwhile: neither waits for the other. The entry names the call's
// comment, by which a later delivery finds its action (comment).
func (w *Worker) calling(ctx context.Context, j *job, comment string, permit *limiter.Permit) (*queue.Entry, error) {
	var recorded chan struct{}
	if permit != nil {
		// The call records it again (at no cost once written) and
		// reports a failure.
		recorded = make(chan struct{})
		go func() {
			defer close(recorded)
			_, _ = w.record(ctx, j, permit)
		}()
	}
	next := j.entryNow(queue.StateCalling, w.clock.Now(), w.opts.Presence.Instance())
	if j.calledBefore() {
		// Earlier calls of the id whose action was not found (a retry's
		// over a failed result, a call cut off): written over, the entry
		// would bound a later delivery's look for their action by this
		// call's start, and the action of a call made long before, now
		// finished, would not be found; the API takes a new call then.
		next.Calls = &queue.EarlierCalls{MachineID: j.req.MachineID, ComputerDNSName: j.req.ComputerDNSName, Since: j.earlierSince}
	}
	next.Comment = comment
	err := notNew(j.entry, w.opts.Ledger.Put(ctx, j.t.name, j.req.RequestID, j.entry, next))
	if recorded != nil {
		<-recorded // the permit is the call's again
	}
	if err != nil {
		return nil, err
	}
	j.entry, j.wroteCalling = next, true
	return next, nil
}

// read makes a read call: any answer but success is the request's failed
// result, its message prefixed with what.
func (w *Worker) read(ctx context.Context, j *job, api, what string, do func(context.Context) *mde.Verdict) (*mde.Verdict, *offboard.Result, error) {
	acquire := func(ctx context.Context) (*limiter.Permit, error) {
		if p, _ := j.t.limits.API(api).TryAcquire(w.clock.Now()); p != nil {
			w.m.LimiterWait.WithLabelValues(api).Observe(0) // as caller.acquire counts a place free at once
			return p, nil
		}
		// A cancel of the request's campaign ends the wait for the
		// read's place, as for the offboard call's.
		return unlessWithdrawn(ctx, w, j, func(ctx context.Context) (*limiter.Permit, error) {
			return w.caller.acquire(ctx, j.t, api, j.prio == offboard.Bulk)
		})
	}
	v, res, err := w.caller.call(ctx, j, callSpec{api: api, do: do, acquire: acquire}, nil)
	if err != nil || res != nil {
		return nil, res, err
	}
	if v.Class != mde.Success {
		return nil, j.failed(v.FailureCode, what+v.Error(), v), nil
	}
	return v, nil, nil
}

// dryRun checks that the device exists, and calls nothing destructive.
func (w *Worker) dryRun(ctx context.Context, j *job, dev *device) (*offboard.Result, error) {
	if dev.machine == nil {
		if res, err := w.readDevice(ctx, j, dev, ""); err != nil || res != nil {
			if w.unreadAfterCall(j, res) {
				return nil, errUnreadAfterLostAnswer
			}
			return res, err
		}
		if dev.policy != nil {
			// The guards needed no read (machineIds alone): the policy
			// records what this one read, as after any read.
			dev.policy.LastSeen = lastSeen(dev.machine)
		}
	}
	r := j.result(offboard.OutcomeDryRun)
	if r.ComputerDNSName == "" {
		r.ComputerDNSName = apiText(dev.machine.ComputerDNSName)
	}
	return r, nil
}

// resolve finds the one device with the requested name. A final dot is
// left out of the lookup: Defender's names have none, and its filter
// compares whole names; the devices it lists are matched as mde.SameName
// says, a final dot aside.
func (w *Worker) resolve(ctx context.Context, j *job, dev *device) (*offboard.Result, error) {
	v, res, err := w.read(ctx, j, mde.APIMachines, "", func(ctx context.Context) *mde.Verdict {
		return j.t.Client.FindMachinesByName(ctx, strings.TrimSuffix(j.req.ComputerDNSName, "."))
	})
	if err != nil || res != nil {
		return res, err
	}
	// Only exact matches count, whatever the API's filter let through:
	// the client keeps those alone, the first maxCandidates of them.
	found := v.Named
	if err := found.Err; err != nil {
		return j.failed(offboard.CodeAPIError, err.Error(), v), nil
	}
	machines := found.Machines
	if found.Count < 2 && found.More {
		// Another device of that name may be on a page not read: the one
		// found (or none) cannot be told to be the only one.
		return j.failed(offboard.CodeAPIError, "the API answered the lookup of "+offboard.Quote(j.req.ComputerDNSName)+" with part of the list (@odata.nextLink); a device is not chosen from part of it", v), nil
	}
	switch found.Count {
	case 0:
		return j.failed(offboard.CodeMachineNotFound, "no device is named "+offboard.Quote(j.req.ComputerDNSName), nil), nil
	case 1:
		if !offboard.ValidMachineID(machines[0].ID) {
			return j.failed(offboard.CodeAPIError, "the API gave a device id that is not 40 hexadecimal characters", nil), nil
		}
		dev.id, dev.machine, dev.read, dev.served = strings.ToLower(machines[0].ID), &machines[0], w.clock.Now(), v.ServerTime
		return nil, nil
	}
	msg := fmt.Sprintf("%d devices are named %s; give the machineId of the one to offboard", found.Count, offboard.Quote(j.req.ComputerDNSName))
	if found.More {
		// The answer holds part of the list: more devices may bear the
		// name than it counts, and the one meant may be none of those
		// listed.
		msg = fmt.Sprintf("at least %d devices are named %s (the API's answer holds part of the list: @odata.nextLink); give the machineId of the one to offboard", found.Count, offboard.Quote(j.req.ComputerDNSName))
	}
	if found.Count > maxCandidates {
		msg += fmt.Sprintf(" (the first %d are listed)", maxCandidates)
	}
	r := j.failed(offboard.CodeAmbiguousMachine, msg, nil)
	for _, m := range machines {
		r.Error.Candidates = append(r.Error.Candidates, offboard.Candidate{MachineID: apiText(m.ID), LastSeen: apiText(m.LastSeen), HealthStatus: apiText(m.HealthStatus)})
	}
	return r, nil
}

// maxCandidates is how many of the devices sharing a name an
// ambiguous_machine result lists. A page of the API's list holds up to
// 10,000; listed whole, with what the API wrote in each, the result could
// outgrow a NATS message, and a result that cannot be stored brings its
// request back for ever. The client keeps no more of them.
const maxCandidates = mde.MaxNameMatches

// maxAPIText is the longest text of the API's (a device's name, id,
// lastSeen, health state) a result carries: a DNS name has at most 253
// characters, and the others are shorter.
const maxAPIText = 255

// apiText is a text the API gave, as a result carries it: "" when longer
// than maxAPIText, which no value of the documented kind is, or when its
// JSON encoding is: a result escapes <, >, &, control characters and
// invalid UTF-8 in six bytes each, and 255 of them in each candidate of an
// ambiguous_machine result outgrow a message of 128 KiB.
func apiText(s string) string {
	if len(s) > maxAPIText {
		return ""
	}
	if enc, err := json.Marshal(s); err != nil || len(enc) > maxAPIText+2 { // with its quotes
		return ""
	}
	return s
}

// answerSkew is how far the API's clocks (its answer's Date, an action's
// creation time) may disagree among themselves.
const answerSkew = 30 * time.Second

// reachedAPI is a time before which an action was surely there before a
// call sent at started (our clock) and answered v at now: five minutes
// before the call by our clock (the skew between ours and the API's), and
// no later than the answer's Date less the time the call took, give or
// take the API's own clocks. Whichever clock is off, the earlier of the
// two errs toward the call's own action: counted in the budget, never
// left out of it.
func reachedAPI(v *mde.Verdict, started, now time.Time) time.Time {
	bound := started.Add(-clockSkew)
	if !v.ServerTime.IsZero() {
		if byDate := v.ServerTime.Add(-max(now.Sub(started), 0) - answerSkew); byDate.Before(bound) {
			bound = byDate
		}
	}
	return bound
}

// handedBack says whether an unfinished action a successful offboard
// answered with is one that was there before the call rather than the
// call's own: it carries another comment, or was created before the call
// reached the API. A field the API left out (MDE-API.md: any may be null
// or missing) proves nothing: the action is the call's, and the budget
// counts it.
func handedBack(a mde.Action, comment string, reached time.Time) bool {
	if a.RequestorComment != "" && a.RequestorComment != comment {
		return true
	}
	created := a.Created()
	return !created.IsZero() && created.Before(reached)
}

// mayBeOwnAction says whether an action in a list may be the one a call
// of this request, sent at since, created: our comment, and created since
// then (give or take the clocks' skew). Without a creation time (any field
// may be missing), its last update must be since then; without either,
// it must be unfinished: an older action with the same comment, cancelled
// or failed, must not pass for one that offboards the device.
func mayBeOwnAction(a mde.Action, comment string, since time.Time) bool {
	if a.RequestorComment != comment {
		return false
	}
	bound := since.Add(-clockSkew)
	if created := a.Created(); !created.IsZero() {
		return !created.Before(bound)
	}
	if updated := a.Updated(); !updated.IsZero() {
		return !updated.Before(bound)
	}
	return a.Unfinished()
}

// acceptedUnread answers an offboard the API accepted (any 2xx is a
// success: MDE-API.md) with an answer that is not a Machine Action (empty,
// cut short, a proxy's page): the action exists, so it is looked for
// until it would have shown in lists (ActionShowsWithin after the call
// was answered), as a fresh action can be missing from them that long.
// Actions made since the "calling" entry (since) count as the call's:
// an earlier attempt whose answer was lost may have made one. Not found,
// the request fails; the call counts as one that acted.
func (w *Worker) acceptedUnread(ctx context.Context, j *job, v *mde.Verdict, since time.Time, comment string, parseErr error) (*offboard.Result, error) {
	// Measured from the answer, not from the entry: the accepted attempt
	// may have gone out long after the entry was written (a 429's pause,
	// a backoff), and the action is as fresh as that attempt.
	acceptedAt := w.clock.Now()
	for look := 0; ; look++ {
		res, err := w.findOwnAction(ctx, j, since, comment)
		if err != nil || res != nil {
			return res, err
		}
		if look >= w.caller.retry.NotFoundCheck && w.clock.Since(acceptedAt) >= w.opts.ActionShowsWithin {
			break
		}
		if err := w.caller.backoffUntil(ctx, look+1, acceptedAt.Add(w.opts.ActionShowsWithin)); err != nil {
			return nil, err
		}
	}
	return j.failed(offboard.CodeAPIError, "the API accepted the call but its answer is not a Machine Action ("+parseErr.Error()+
		"), and the device's offboard actions show none of ours", v), nil
}

// lookForOwnAction is findOwnAction, looked for again a few times
// (NotFoundCheck, with backoffs) while lists do not show it: a fresh
// action can be missing from them for a moment.
func (w *Worker) lookForOwnAction(ctx context.Context, j *job, since time.Time, comment string) (*offboard.Result, error) {
	for look := 0; ; look++ {
		res, err := w.findOwnAction(ctx, j, since, comment)
		if err != nil || res != nil || look >= w.caller.retry.NotFoundCheck {
			return res, err
		}
		if err := w.caller.backoff(ctx, look+1); err != nil {
			return nil, err
		}
	}
}

// existingAction answers ActiveRequestAlreadyExists: created with the
// action an earlier attempt of this message whose answer was lost made
// (our comment, created since the call was sent, and not answered created
// for another request: createdActions), finished or not; else already
// pending with the device's unfinished Offboard action. With neither, a
// refusal taken for a duplicate by its message alone fails as the 4xx it
// is (api_rejected), one by its code api_error once lists would have
// shown the pending action (ActionShowsWithin after the refusal).
func (w *Worker) existingAction(ctx context.Context, j *job, refused *mde.Verdict, since time.Time, comment string) (*offboard.Result, error) {
	// A refusal under the API's code says that an Offboard action of the
	// device is pending now, and one made a moment ago (another request's
	// for the device, just before this one's call) may take
	// ActionShowsWithin to show in lists: it is looked for until then. A
	// refusal taken for a duplicate by its message alone may be of another
	// kind of action, and gets only the few looks.
	refusedAt := w.clock.Now()
	byCode := refused.FailureCode == ""
	until := w.unlistedUntil(j)
	if byCode && refusedAt.Add(w.opts.ActionShowsWithin).After(until) {
		until = refusedAt.Add(w.opts.ActionShowsWithin)
	}
	// A fresh action can be missing from lists for a moment: look again a
	// few times before saying so.
	for look := 0; ; look++ {
		actions, res, err := w.offboardActions(ctx, j)
		if err != nil || res != nil {
			return res, err
		}
		// The request's own action, from an attempt whose answer was
		// lost, may have finished meanwhile (the device took it at once):
		// it is looked for among all of them first.
		if w.mayHaveCalled(j) {
			if res := w.ownAmong(j, actions, comment, since); res != nil {
				return res, nil
			}
		}
		for _, a := range actions {
			if a.Unfinished() {
				// After an attempt of this message that may have acted,
				// the pending action may be that attempt's own with its
				// comment left out (any member may be): unless it shows
				// it is another's, it counts in the budget, as an
				// accepted call's answer does (handedBack).
				j.pendingMayBeOwn = j.mayHaveActed && !handedBack(a, comment, since.Add(-clockSkew)) &&
					!j.t.created.forAnother(a.ID, j.req.RequestID)
				return j.withAction(offboard.OutcomeAlreadyPending, a), nil
			}
		}
		if look >= w.caller.retry.NotFoundCheck && !w.mayBeUnlisted(j) && (!byCode || w.clock.Since(refusedAt) >= w.opts.ActionShowsWithin) {
			if refused.FailureCode != "" {
				// Taken for a duplicate by its message alone (mde.Classify),
				// and not borne out: the refusal it is, in the API's words.
				return j.failed(refused.FailureCode, refused.Error(), refused), nil
			}
			return j.failed(offboard.CodeAPIError, "the API reports an offboard already pending, but lists no unfinished Offboard action for the device", refused), nil
		}
		if err := w.caller.backoffUntil(ctx, look+1, until); err != nil {
			return nil, err
		}
	}
}

// mayBeUnlisted says whether an action a call of the request made may
// still be missing from lists: the call (an earlier delivery's or a
// stopped replica's, or an attempt of this message whose answer was
// lost) went out less than ActionShowsWithin ago. A repeat refused as a
// duplicate then most likely met that very action: it is looked for
// until it would have shown, not answered api_error after a few looks.
func (w *Worker) mayBeUnlisted(j *job) bool {
	within := func(t time.Time) bool { return !t.IsZero() && w.clock.Since(t) < w.opts.ActionShowsWithin }
	return within(j.earlierCall) || within(j.lostAt)
}

// unlistedUntil is when an action a call of the request made shows in
// lists at the latest (mayBeUnlisted); zero with no such call.
func (w *Worker) unlistedUntil(j *job) time.Time {
	var until time.Time
	for _, t := range []time.Time{j.earlierCall, j.lostAt} {
		if !t.IsZero() && t.Add(w.opts.ActionShowsWithin).After(until) {
			until = t.Add(w.opts.ActionShowsWithin)
		}
	}
	return until
}

// findOwnAction looks for the Offboard action a call of this request may
// have created since it was sent (after a crash, or an attempt whose answer
// was lost): one with our comment, created since then, and not one this
// process answered created for another request. Found, it is the
// request's result; not found (nil, nil), a call may be sent.
func (w *Worker) findOwnAction(ctx context.Context, j *job, since time.Time, comment string) (*offboard.Result, error) {
	actions, res, err := w.offboardActions(ctx, j)
	if err != nil || res != nil {
		return res, err
	}
	return w.ownAmong(j, actions, comment, since), nil
}

// ownAmong is the created result with the action among actions that a
// call of this request, sent at since, may have made (mayBeOwnAction),
// and that this process did not answer created for another request; nil
// when there is none.
func (w *Worker) ownAmong(j *job, actions []mde.Action, comment string, since time.Time) *offboard.Result {
	for _, a := range actions {
		if mayBeOwnAction(a, comment, since) && !j.t.created.forAnother(a.ID, j.req.RequestID) {
			j.log.Info("found the action of an earlier attempt", zap.String("action_id", a.ID))
			return w.ownAction(j, a)
		}
	}
	return nil
}

// ownAction is the created result with the request's own action, which
// this process then remembers as answered for it (createdActions).
func (w *Worker) ownAction(j *job, a mde.Action) *offboard.Result {
	j.t.created.note(a.ID, j.req.RequestID, w.clock.Now())
	return j.withAction(offboard.OutcomeCreated, a)
}

// offboardActions lists the device's Offboard actions, newest first. A
// list that cannot be read (a 404, a 5xx, a proxy's page) is the
// request's failed result, unless a call of the request may have made an
// action: then the request is not answered failed while its action may
// exist, but taken again to look for it (errUnlistedAfterCall).
func (w *Worker) offboardActions(ctx context.Context, j *job) ([]mde.Action, *offboard.Result, error) {
	v, res, err := w.read(ctx, j, mde.APIMachineActions, "list the device's offboard actions: ", func(ctx context.Context) *mde.Verdict {
		return j.t.Client.OffboardActions(ctx, j.req.MachineID)
	})
	var actions []mde.Action
	if err == nil && res == nil {
		var perr error
		if actions, perr = mde.ParseActions(v.Body); perr != nil {
			res = j.failed(offboard.CodeAPIError, perr.Error(), v)
		}
	}
	if res != nil && w.mayHaveCalled(j) {
		j.log.Info("the device's actions could not be listed after a call that may have acted", zap.String("code", res.Error.Code))
		return nil, nil, errUnlistedAfterCall
	}
	if err != nil || res != nil {
		return nil, res, err
	}
	// Only the device's Offboard actions count, whatever the API's filter
	// let through: another device's pending action (a campaign's, with
	// the same comment) is neither this request's nor a pending offboard
	// of this device.
	actions = slices.DeleteFunc(actions, func(a mde.Action) bool { return !a.OffboardOf(j.req.MachineID) })
	// Newest first, whatever order the API used.
	slices.SortStableFunc(actions, func(a, b mde.Action) int { return b.Created().Compare(a.Created()) })
	return actions, nil, nil
}
