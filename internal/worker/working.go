package worker

import (
	"context"
	"strconv"
	"strings"

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

// callElsewhere says whether this message's call, whose "calling" entry a
// delivery of it meets, may still be under way in another process: the
// delivery that called may still be at work there, in a backoff or a 429
// pause. The process that wrote the entry is asked; one that does not
// answer counts as at work while the replicas' announcements say it lives
// (a moment cut off from NATS) or cannot say (this replica's view of the
// others is behind), and as gone otherwise (a process that died counts
// as alive until its announcement expires, 15 s). A process that handles
// the request no more (it left it, or stopped) or is gone has ended its
// call, and the request is taken up as a call cut off (the action it may
// have made is looked for first). This process's own entry is no call
// under way: a delivery still at work here is never handled twice
// (tenantRun.working). An entry that names no process (an earlier
// release's) counts as under way for an ack wait; any other, past the
// calling lease, only while its process says so (stillAtWork).
func (w *Worker) callElsewhere(ctx context.Context, j *job, e *queue.Entry) bool {
	age := w.clock.Since(e.Started)
	switch {
	case e.Writer == "":
		return age < w.opts.Settings.AckWait
	case e.Writer == w.opts.Presence.Instance():
		return false
	case age >= w.opts.CallingLease:
		return w.stillAtWork(ctx, j.t.name, e)
	}
	if busy, answered := w.askWorking(ctx, e.Writer, j.t.name, j.seq); answered {
		return busy
	}
	return w.opts.Presence.Running(e.Writer)
}
