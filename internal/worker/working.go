package worker

import (
	"context"
	"errors"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"go.uber.org/zap"

	"github.com/contoso-secops/mde-offboard/internal/queue"
)

// Replicas ask each other whether a request is in their hands: a
// tenant's consumer made again (a lone NATS server restarted: the
// consumers' state is in memory) delivers anew a request that another
// process may still be calling for (callElsewhere).

// serveWorking answers, on Subjects.Working of this process's instance,
// whether a request ("<tenant> <stream sequence>") is being handled here:
// "yes" or "no"; "?" to a question it cannot read, which the asker takes
// for no answer. A worker without an instance (no presence) answers
// nothing.
func (w *Worker) serveWorking() {
	inst := w.opts.Presence.Instance()
	if inst == "" {
		return
	}
	sub, err := w.opts.JS.Conn().Subscribe(w.opts.Settings.Subjects.Working(inst), func(m *nats.Msg) {
		tenant, seqText, _ := strings.Cut(string(m.Data), " ")
		seq, err := strconv.ParseUint(seqText, 10, 64)
		answer := "?"
		if err == nil {
			answer = "no"
			if w.handlesHere(tenant, seq) {
				answer = "yes"
			}
		}
		_ = m.Respond([]byte(answer))
	})
	if err != nil {
		w.log.Warn("answer other replicas whether a request is in this one's hands", zap.Error(err))
		return
	}
	w.workingSub = sub
	w.checkWorkingSub(sub.Subject)
}

// checkWorkingSub logs an error when NATS refused this process the
// subscription to subject, which it says only in an asynchronous error:
// other replicas could not ask it whether a request is in its hands, and
// one that takes up such a request while this process lives leaves it,
// asking every few seconds, until its calling lease ends (2 h).
func (w *Worker) checkWorkingSub(subject string) {
	nc := w.opts.JS.Conn()
	if err := nc.FlushTimeout(queue.StepTimeout); err != nil {
		return // no word from the server: nothing to say
	}
	last := nc.LastError()
	if errors.Is(last, nats.ErrPermissionViolation) && strings.Contains(last.Error(), `Subscription to "`+subject+`"`) {
		w.log.Error("other replicas cannot ask this one whether a request is in its hands: NATS refused the subscription; grant this process's user subscribe on "+
			w.opts.Settings.Subjects.Working(">"), zap.Error(last))
	}
}

// stillAtWork says whether the message that wrote a "calling" entry past
// its lease, another message of the id, is still being handled by the
// process that wrote it. Only a plain yes counts: a process that cannot
// be asked (gone, cut off, an entry of an earlier release) is left to the
// lease, as before there was anyone to ask.
func (w *Worker) stillAtWork(ctx context.Context, tenant string, e *queue.Entry) bool {
	switch e.Writer {
	case "":
		return false
	case w.opts.Presence.Instance():
		return w.handlesHere(tenant, e.Seq)
	}
	busy, answered := w.askWorking(ctx, e.Writer, tenant, e.Seq)
	return busy && answered
}

// handlesHere says whether this process handles the tenant's request at
// stream place seq now; none of a tenant not served here.
func (w *Worker) handlesHere(tenant string, seq uint64) bool {
	t, ok := w.tenants[tenant]
	if !ok {
		return false
	}
	return t.handles(seq)
}

// handles says whether a request at stream place seq is under way here:
// of either stream, should the request stream have been made again, which
// errs on the side of a call still under way.
func (t *tenantRun) handles(seq uint64) bool {
	busy := false
	t.working.Range(func(k, _ any) bool {
		busy = k.(workKey).seq == seq
		return !busy
	})
	return busy
}

// askWorking asks the process marked instance whether it handles the
// request now. answered is false when no plain answer came: the process
// is gone, or cut off from NATS for a moment.
func (w *Worker) askWorking(ctx context.Context, instance, tenant string, seq uint64) (busy, answered bool) {
	ctx, cancel := queue.StepCtx(ctx)
	defer cancel()
	msg, err := w.opts.JS.Conn().RequestWithContext(ctx, w.opts.Settings.Subjects.Working(instance), []byte(tenant+" "+strconv.FormatUint(seq, 10)))
	if err != nil {
		return false, false
	}
	switch string(msg.Data) {
	case "yes":
		return true, true
	case "no":
		return false, true
	}
	return false, false
}

// callElsewhere says how long a delivery of this message that meets its
// "calling" entry is left for, as its call may still be under way in
// another process (0: it is not): the delivery that called may still be
// at work there, in a backoff or a 429 pause. The process that wrote the
// entry is asked; one that says it is at work holds the request for an
// ack wait. One that does not answer counts as at work while the
// replicas' announcements say it lives (a moment cut off from NATS) or
// cannot say (this replica's view of the others is behind), and as gone
// otherwise (a process that died counts as alive until its announcement
// expires, 15 s): it is asked again after silentWriterWait, as it is
// most likely dead (killed mid-call, its worker restarted as another
// process); left for an ack wait, its request waited that long past the
// end of the announcement. A process that handles the request no more
// (it left it, or stopped) or is gone has ended its call, and the
// request is taken up as a call cut off (the action it may have made is
// looked for first). This process's own entry is no call under way: a
// delivery still at work here is never handled twice (tenantRun.working).
// An entry that names no process (an earlier release's) counts as under
// way for an ack wait; any other, past the calling lease, only while its
// process says so (stillAtWork).
func (w *Worker) callElsewhere(ctx context.Context, j *job, e *queue.Entry) time.Duration {
	ackWait := w.opts.Settings.AckWait
	age := w.clock.Since(e.Started)
	switch {
	case e.Writer == "":
		return ifUnderWay(age < ackWait, ackWait)
	case e.Writer == w.opts.Presence.Instance():
		return 0
	case age >= w.opts.CallingLease:
		return ifUnderWay(w.stillAtWork(ctx, j.t.name, e), ackWait)
	}
	if busy, answered := w.askWorking(ctx, e.Writer, j.t.name, j.seq); answered {
		return ifUnderWay(busy, ackWait)
	}
	return ifUnderWay(w.opts.Presence.Running(e.Writer), min(ackWait, silentWriterWait))
}

// silentWriterWait is how soon a request is taken again whose call's
// process did not answer while its announcement still counted.
const silentWriterWait = 5 * time.Second

// ifUnderWay is wait when the call is under way elsewhere, else 0.
func ifUnderWay(underWay bool, wait time.Duration) time.Duration {
	if underWay {
		return wait
	}
	return 0
}
