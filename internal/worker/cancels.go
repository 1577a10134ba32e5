package worker

import (
	"context"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"go.uber.org/zap"

	"github.com/contoso-secops/mde-offboard/internal/queue"
	"github.com/contoso-secops/mde-offboard/offboard"
)

// This file carries a campaign's cancel to the requests it withdraws
// wherever they wait, within a moment of its mark landing (campaign.Watcher):
// in the stream while the tenant's loop waits for quota or budget (the loop
// then takes them: they need neither, and are answered cancelled), and in
// the worker, while they wait for their device, a budget slot or a place
// in the quota.

// cancels tells a tenant's waits that a cancel of one of its campaigns
// landed.
type cancels struct {
	mu     sync.Mutex
	landed context.Context // ends at the next cancel
	land   context.CancelFunc
	// back is when the last request of a cancelled campaign that left
	// after its cancel is back in the stream (landBackIn), and again the
	// timer that ends the waits then.
	back  time.Time
	again *time.Timer
}

func newCancels() *cancels {
	c := &cancels{}
	c.landed, c.land = context.WithCancel(context.Background())
	return c
}

// next returns a context that ends when a cancel of one of the tenant's
// campaigns lands from now on.
func (c *cancels) next() context.Context {
	if c == nil {
		return context.Background() // never: a tenant without a loop
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.landed
}

// landedNow ends the waits on the current context; later ones wait for
// the next cancel.
func (c *cancels) landedNow() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.landLocked()
}

func (c *cancels) landLocked() {
	c.land()
	c.landed, c.land = context.WithCancel(context.Background())
}

// landBackIn ends the waits as a cancel does once more when a request of
// a cancelled campaign, left after the cancel with a nak's delay of d
// (errCancelledAfterLostAnswer), is back in the stream: the tenant's loop
// takes it then without quota or budget (fetchWithdrawn), which it needs
// neither of. Otherwise it came back only with a place in the quota and a
// budget slot, hours later when either was spent. The delay runs on the
// server's real time, and so does the timer; one timer serves all such
// requests, ending the waits again as long as one is due.
func (c *cancels) landBackIn(d time.Duration) {
	if c == nil {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if at := time.Now().Add(d + backInStream); at.After(c.back) {
		c.back = at
	}
	if c.again == nil {
		c.again = time.AfterFunc(time.Until(c.back), c.landBack)
	}
}

func (c *cancels) landBack() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.landLocked()
	c.again = nil
	if wait := time.Until(c.back); wait > 0 {
		c.again = time.AfterFunc(wait, c.landBack)
	}
}

// backInStream is how long after its nak's delay a request is taken to be
// back in the stream for a pull.
const backInStream = 500 * time.Millisecond

// cancelLanded is told by the campaign watcher of each cancel it reads.
func (w *Worker) cancelLanded(tenant string) {
	if t := w.tenants[tenant]; t != nil {
		t.cancels.landedNow()
	}
}

// waitCall waits until an offboard call of the tenant could start: its
// quota, then its budget. A cancel of one of the tenant's campaigns landed
// since the loop last took requests for one (t.landed) ends the wait: the
// error is then that of a context ended, and the loop takes the requests
// there are (fetchWithdrawn).
func (w *Worker) waitCall(ctx context.Context, t *tenantRun) error {
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	if t.landed.Err() != nil {
		cancel() // landed already: a call that could start now goes on
	} else {
		defer context.AfterFunc(t.landed, cancel)()
	}
	if err := w.waitQuota(wctx, t); err != nil {
		return err
	}
	return w.waitBudget(wctx, t)
}

// fetchWithdrawn takes the requests of a cancelled campaign there are
// now in the given priorities, up to as many as the free slots allow (it
// takes those slots; with the one the caller holds, n of them), for a
// cancel: they are answered at once, without a call. The others pulled
// on the way are set aside until the pull is over, then go back to the
// stream at once, in their order: given back one pull at a time, they
// would be the next pull's again (a redelivery comes first), and a
// cancelled campaign's requests behind n others would never be reached.
// It pulls each priority in turn, normal first, until it has no request
// left to hand out, the slots are full, or withdrawScan of its requests
// are set aside: the priorities are lanes of their own, and a bulk
// campaign's requests wait behind no normal request there. A lane whose
// pull stopped at withdrawScan is read past them, once for the cancel,
// and the cancelled campaigns' requests found there are answered where
// they wait (withdrawBehind): pulled, they would come only once those
// ahead of them were called. It says
// whether it took a request of a cancelled campaign: if so, the loop
// takes the next ones the same way.
func (w *Worker) fetchWithdrawn(ctx context.Context, t *tenantRun, slots chan struct{}, prios []offboard.Priority) (ds []queue.Delivery, n int, more bool, err error) {
	// Read before the fetch: a cancel landing from now on is taken
	// again.
	t.landed = t.cancels.next()
	n = 1 + takeSlots(slots, cap(slots)-1)
	var (
		aside  []queue.Delivery
		behind []offboard.Priority // lanes with requests past those set aside
	)
	defer func() {
		w.giveBack(t, aside)
		w.withdrawBehind(ctx, t, behind)
	}()
	for _, p := range prios {
		setAside := 0
		for len(ds) < n && setAside < withdrawScan {
			got, err := t.source.NextBatchNow(ctx, min(n-len(ds), withdrawScan-setAside), w.room(), p)
			if err != nil {
				if len(ds) > 0 {
					return ds, n, true, nil // the error comes back with the next pull
				}
				return nil, n, true, err // taken again after the error
			}
			if len(got) == 0 {
				break
			}
			for _, d := range got {
				if w.withdrawable(t, d) {
					ds = append(ds, d)
					continue
				}
				aside = append(aside, d)
				setAside++
				// Its room is given back now: back in the stream within
				// the pull, it must not hold up the pull's next requests.
				w.newPlace().give()
			}
		}
		if setAside >= withdrawScan && t.readBehind[p] != t.landed {
			// The lane holds more: read past the requests set aside,
			// once for this cancel (withdrawBehind).
			t.readBehind[p] = t.landed
			behind = append(behind, p)
		}
	}
	return ds, n, len(ds) > 0, nil
}

// withdrawScan is how many requests of one priority a pull for a cancel
// sets aside at most: far more than a tenant's in-flight slots, well
// within each priority's consumer's cap on requests delivered and not
// acked (256 by default). Those behind them are read, not pulled
// (withdrawBehind).
const withdrawScan = 200

// withdrawable says whether a request taken for a cancel is a cancelled
// campaign's.
func (w *Worker) withdrawable(t *tenantRun, d queue.Delivery) bool {
	_, ok := w.ofCancelled(t, d.Msg.Data(), storedAt(d.Msg))
	return ok
}

// ofCancelled says whether a request of the tenant, stored in the stream
// at stored, is a cancelled campaign's, and its request id.
func (w *Worker) ofCancelled(t *tenantRun, data []byte, stored time.Time) (string, bool) {
	req, err := offboard.ParseRequest(data, t.name)
	if err != nil || w.campaigns == nil {
		return "", false
	}
	_, ok := w.campaigns.Cancelled(t.name, req, cancelStored(req, stored))
	return req.RequestID, ok
}

// giveBack gives the requests a pull for a cancel set aside back to the
// stream at once, in their order: held in the worker for a place in the
// quota, they would take the next places ahead of requests that come
// before them (normal priority before bulk). At once, not after a delay:
// set aside, a normal request would let a bulk one take the next place,
// and one whose place frees meanwhile would wait out the delay.
//
// The pass waits until the server has taken them back (queue.NakInOrder):
// the next pass, or the loop's next fetch, follows at once, and a pull
// ahead of the naks would get requests published after them first.
func (w *Worker) giveBack(t *tenantRun, ds []queue.Delivery) {
	if len(ds) == 0 {
		return
	}
	msgs := make([]jetstream.Msg, 0, len(ds))
	for _, d := range ds {
		if meta, err := d.Msg.Metadata(); err == nil && meta.NumDelivered == 1 {
			if req, err := offboard.ParseRequest(d.Msg.Data(), t.name); err == nil {
				w.claimReturned(t, meta.Sequence.Stream, req)
			}
		}
		msgs = append(msgs, d.Msg)
	}
	if w.opts.JS == nil {
		for _, m := range msgs {
			if err := m.Nak(); err != nil {
				t.log.Warn("nak a request taken with a cancelled campaign's", zap.Error(err))
			}
		}
	} else {
		ctx, cancel := queue.StepCtx(context.Background())
		if err := queue.NakInOrder(ctx, w.opts.JS, msgs); err != nil {
			t.log.Warn("nak the requests taken with a cancelled campaign's: those not taken back come back after their ack wait", zap.Int("requests", len(msgs)), zap.Error(err))
		}
		cancel()
	}
	for _, d := range ds {
		// A pull of the pass after it found its lane empty: the loop's
		// next fetch must look there first.
		t.source.Returned(d.Prio)
	}
}

// storedAt is when the server stored a request in the stream (zero: not
// known).
func storedAt(m jetstream.Msg) time.Time {
	meta, err := m.Metadata()
	if err != nil {
		return time.Time{}
	}
	return meta.Timestamp
}

// withdrawnError ends a request's wait in the worker: its campaign was
// cancelled. res is its result.
type withdrawnError struct{ res *offboard.Result }

func (e *withdrawnError) Error() string {
	return "the request's campaign was cancelled while it waited"
}

// unlessWithdrawn runs wait, a request's wait in the worker before its
// offboard call (for its device, a budget slot, its place in the quota),
// so that a cancel of its campaign ends it, also one landing meanwhile:
// the error is then a *withdrawnError. A request a call of which may have
// gone out (mayHaveCalled) is not withdrawn, as in beforeCall; a wait for
// what only the call needs (unlessCancelled) ends all the same. A cancel
// of another campaign of the tenant has the wait go on.
func unlessWithdrawn[T any](ctx context.Context, w *Worker, j *job, wait func(context.Context) (T, error)) (T, error) {
	return untilCancel(ctx, w, j, false, wait)
}

// unlessCancelled is unlessWithdrawn for a wait that only the offboard
// call needs (its quota, its journal entry, a budget slot, its device),
// not a read: a request a call of which may have acted leaves at the
// cancel (errCancelledAfterLostAnswer), since no call of it goes out
// after it, rather than wait for them, up to hours with the quota spent.
func unlessCancelled[T any](ctx context.Context, w *Worker, j *job, wait func(context.Context) (T, error)) (T, error) {
	return untilCancel(ctx, w, j, true, wait)
}

func untilCancel[T any](ctx context.Context, w *Worker, j *job, forCall bool, wait func(context.Context) (T, error)) (T, error) {
	for {
		landed := j.t.cancels.next()
		if res := w.cancelled(j); res != nil {
			var zero T
			switch {
			case !w.mayHaveCalled(j):
				return zero, &withdrawnError{res: res}
			case forCall:
				return zero, errCancelledAfterLostAnswer
			}
		}
		wctx, cancel := context.WithCancel(ctx)
		stop := context.AfterFunc(landed, cancel)
		got, err := wait(wctx)
		stop()
		cancel()
		if err == nil || ctx.Err() != nil || landed.Err() == nil {
			return got, err
		}
	}
}
