package worker

import (
	"context"
	"runtime/debug"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/zap"

	"github.com/contoso-secops/mde-offboard/internal/queue"
	"github.com/contoso-secops/mde-offboard/offboard"
)

// This file carries a campaign's cancel to the requests of the campaign
// that wait behind more of a lane's requests than a cancel pass sets
// aside (withdrawScan): a campaign's rows published behind another's
// thousands on the bulk subject, or behind hundreds of normal requests
// held by a spent quota or a pause. Pulled, they would come only once
// the requests ahead of them were called, hours or days later. They are
// read from the stream instead, past the requests the lane's consumer
// delivered, and answered where they are, as a delivered request is
// (answered): the ledger tells a request answered or worked on elsewhere
// meanwhile, and no call goes out. The others are only read: they keep
// their places and their order.

// behindReads runs a tenant's reads past the requests a pass set aside:
// one at a time, the lanes asked for meanwhile read after it.
type behindReads struct {
	mu    sync.Mutex
	asked map[offboard.Priority]bool
	// ctx is the last ask's: the tenant's assignment then. The reads
	// asked for go under it, not under the one the running reads began
	// with, which may have ended since (the tenant moved away and back).
	ctx     context.Context
	running bool
}

// behindAnswers bounds the requests a read answers at once.
const behindAnswers = 8

// behindRetry is how soon a read cut off by an outage is taken again.
const behindRetry = time.Second

// behindReadsAtOnce bounds the reads under way at once, all tenants
// together: each has a consumer of the request stream of its own, and
// answers behindAnswers requests at once. Unbounded, a thousand tenants'
// cancels at once made a thousand such consumers, the whole room the
// request stream's max_consumers (2N + 1001) keeps beside the tenants'
// own, for stale consumers and operators', and answered eight thousand
// requests at once, past the worker's bound on the requests it works on
// (Options.MaxRequests). The others wait their turn.
const behindReadsAtOnce = 4

// withdrawBehind reads the tenant's lanes of the given priorities past
// the requests the consumer delivered, in the background, and answers
// the cancelled campaigns' requests found there (readBehind). The read
// ends with ctx: the tenant's assignment here, or a stop.
func (w *Worker) withdrawBehind(ctx context.Context, t *tenantRun, prios []offboard.Priority) {
	if len(prios) == 0 || w.opts.JS == nil || w.requests == nil {
		return
	}
	b := &t.behind
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.asked == nil {
		b.asked = map[offboard.Priority]bool{}
	}
	for _, p := range prios {
		b.asked[p] = true
	}
	b.ctx = ctx
	if b.running {
		return // read once it is over: a cancel landed during the read
	}
	b.running = true
	w.fetchers.Go(func() { w.runBehind(t) })
}

// runBehind makes the reads asked for (withdrawBehind) until none is
// left, each under the context of the last ask.
func (w *Worker) runBehind(t *tenantRun) {
	b := &t.behind
	for {
		b.mu.Lock()
		ctx := b.ctx
		var prios []offboard.Priority
		for _, p := range bothPriorities {
			if b.asked[p] {
				prios = append(prios, p)
			}
		}
		clear(b.asked)
		if len(prios) == 0 || ctx.Err() != nil {
			b.running = false
			b.mu.Unlock()
			return
		}
		b.mu.Unlock()
		for _, p := range prios {
			w.readBehind(ctx, t, p)
		}
	}
}

// readBehindOnce is one read of readBehind, once a place among the
// worker's behindReadsAtOnce is free: it returns how many requests it
// read (-1: none, ctx ended before its place) and answered. A read NATS
// refused the user fails with the refusal (queue.ReadRefused).
func (w *Worker) readBehindOnce(ctx context.Context, t *tenantRun, p offboard.Priority) (read, found int, err error) {
	var (
		wg    sync.WaitGroup
		slots = make(chan struct{}, behindAnswers)
		ids   = map[string]bool{} // request ids being answered
		// again are more messages of a request id being answered:
		// answered after it, from the ledger, rather than left for the
		// claim under way.
		again []*jetstream.RawStreamMsg
	)
	answer := func(id string, m *jetstream.RawStreamMsg) {
		if ids[id] {
			again = append(again, m)
			return
		}
		select {
		case slots <- struct{}{}:
		case <-ctx.Done():
			return
		}
		ids[id] = true
		found++
		wg.Go(func() {
			defer func() { <-slots }()
			w.answerBehind(ctx, t, m, p)
		})
	}
	select {
	case w.behindSlots <- struct{}{}:
	case <-ctx.Done():
		return -1, 0, ctx.Err()
	}
	defer func() { <-w.behindSlots }()
	nc := w.opts.JS.Conn()
	before := nc.LastError() // a refusal the read did not meet
	read, err = queue.ReadUndelivered(ctx, w.requests, t.source.Consumer(p), func(m *jetstream.RawStreamMsg) {
		if id, ok := w.ofCancelled(t, m.Data, m.Time); ok {
			answer(id, m)
		}
	})
	if err != nil {
		err = queue.ReadRefused(nc, before, err)
	}
	wg.Wait()
	for len(again) > 0 && ctx.Err() == nil {
		clear(ids)
		next := again
		again = nil
		for _, m := range next {
			id, _ := w.ofCancelled(t, m.Data, m.Time)
			answer(id, m)
		}
		wg.Wait()
	}
	return read, found, err
}

// readBehind reads the lane of priority p past the requests its consumer
// delivered (queue.ReadUndelivered) and answers each request of a
// cancelled campaign found there (answerBehind), a few at a time, once
// one of the worker's behindReadsAtOnce reads is free. A read
// cut off by an outage (NATS away, no leader) is made again, from the
// consumer's delivered point then (the requests answered meanwhile are
// deleted), until ctx ends; any other failure gives it up, and the
// requests not reached are answered cancelled as they are delivered.
func (w *Worker) readBehind(ctx context.Context, t *tenantRun, p offboard.Priority) {
	for {
		read, found, err := w.readBehindOnce(ctx, t, p)
		if err == nil || ctx.Err() != nil {
			if read > 0 {
				t.log.Info("read the requests waiting behind those a cancel's pass set aside",
					zap.String("priority", string(p)), zap.Int("read", read), zap.Int("cancelled", found), zap.Error(err))
			}
			return
		}
		if !queue.Outage(err) {
			t.log.Warn("read the requests waiting behind those a cancel's pass set aside: given up, those of the cancelled campaigns are answered as they are delivered",
				zap.String("priority", string(p)), zap.Int("read", read), zap.Int("cancelled", found), zap.Error(err))
			return
		}
		msg := "read the requests waiting behind those a cancel's pass set aside: read again"
		t.repeats.log(t.log, zap.WarnLevel, causeOf(msg, err), msg, zap.String("priority", string(p)), zap.Error(err))
		if sleepCtx(ctx, realClock, behindRetry) != nil {
			return
		}
	}
}

// answerBehind answers a request of a cancelled campaign read from the
// stream, not delivered (storedRequest), as a delivered one is: its
// ledger entry, its result under its message id, its dead letter, then
// its delete from the stream (there is no delivery to ack). The ledger
// decides, as for any delivery: a request answered already is answered
// from it again (the repeat dropped by its message id), one worked on
// elsewhere, or whose call may have gone out, is left to its delivery;
// one that this process works on now too. Nothing here calls the API.
func (w *Worker) answerBehind(ctx context.Context, t *tenantRun, m *jetstream.RawStreamMsg, p offboard.Priority) {
	j := w.newJob(t, storedRequest{m}, p)
	if !j.mark() {
		return // delivered here meanwhile: answered by that delivery
	}
	defer j.unmark()
	defer func() {
		if r := recover(); r != nil {
			j.log.Error("answering a request of a cancelled campaign read from the stream panicked: left to its delivery", zap.Any("panic", r), zap.ByteString("stack", debug.Stack()))
		}
	}()
	req, err := offboard.ParseRequest(m.Data, t.name)
	if err == nil {
		err = req.CheckTime(j.received)
	}
	if err != nil {
		return // answered invalid_request when delivered
	}
	j.req = req
	j.log = j.log.WithLazy(zap.String("request_id", req.RequestID))
	j.checked = true
	// Counted as a delivered request is, in
	// mde_offboard_requests_received_total: else the tenant had results
	// of requests never counted received.
	w.countReceived(j)
	w.answered(ctx, j) // false: left to its delivery, which goes by the ledger
}
