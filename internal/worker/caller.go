package worker

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"sync"
	"time"

	"github.com/jonboulle/clockwork"
	"go.uber.org/zap"

	"github.com/contoso-secops/mde-offboard/internal/limiter"
	"github.com/contoso-secops/mde-offboard/internal/mde"
	"github.com/contoso-secops/mde-offboard/offboard"
)

// RetryPolicy says how often and how fast failed calls are repeated. It is
// the one place these numbers live: the offboarding steps and the tracker
// both read it.
type RetryPolicy struct {
	Attempts      int           // calls per request for network errors and 5xx, default 6
	NotFoundCheck int           // extra looks after a 404 before it is final, default 3
	Throttles     int           // 429s per call before giving up, default 30
	Base          time.Duration // first backoff, default 1s
	Max           time.Duration // backoff cap, default 1m
}

func (p RetryPolicy) withDefaults() RetryPolicy {
	if p.Attempts <= 0 {
		p.Attempts = 6
	}
	if p.NotFoundCheck <= 0 {
		p.NotFoundCheck = 3
	}
	if p.Throttles <= 0 {
		p.Throttles = 30
	}
	if p.Base <= 0 {
		p.Base = time.Second
	}
	if p.Max <= 0 {
		p.Max = time.Minute
	}
	return p
}

// tries counts one call's attempts by what came of them.
type tries struct {
	retries, notFound, throttles int
	refreshed                    bool
	// unknown says that an attempt may have reached the API and acted
	// without an answer (one with a recheck): a later attempt that was
	// not sent (no connection to the API host) leaves it so.
	unknown bool
}

// next is what the caller does after an attempt.
type next int

const (
	nextDone    next = iota // the verdict is the call's answer
	nextBackoff             // wait, then try again
	nextAgain               // try again at once: a new token, or a 429's pause is the wait
	nextGiveUp              // retries ran out
)

// decide applies the policy to one verdict. It reads only the verdict, so
// every answer, transport error and token failure is handled alike.
func (p RetryPolicy) decide(n *tries, v *mde.Verdict, canRefresh bool) next {
	switch {
	case v.Class == mde.Throttled:
		n.throttles++
		if n.throttles >= p.Throttles {
			return nextGiveUp
		}
		return nextAgain
	case v.RefreshToken && canRefresh && !n.refreshed:
		n.refreshed = true
		return nextAgain
	case v.Class == mde.NotFound && n.notFound < p.NotFoundCheck:
		n.notFound++
	case v.Class != mde.Retry:
		return nextDone
	}
	n.retries++
	if n.retries >= p.Attempts+p.NotFoundCheck || (v.Class != mde.NotFound && n.retries-n.notFound >= p.Attempts) {
		return nextGiveUp
	}
	return nextBackoff
}

// caller makes API calls under a tenant's quota: it waits for a permit,
// enters the call in the quota, sends it, counts it, and repeats it as the
// retry policy says.
type caller struct {
	clock clockwork.Clock
	m     *Metrics
	retry RetryPolicy

	mu  sync.Mutex
	rng *rand.Rand // backoff jitter; seeded, so tests can repeat a run
}

func newCaller(clock clockwork.Clock, m *Metrics, retry RetryPolicy, seed uint64) *caller {
	return &caller{clock: clock, m: m, retry: retry.withDefaults(), rng: rand.New(rand.NewPCG(seed, seed>>1|1))}
}

// errQuotaJournal marks a call that was not sent because the shared quota
// journal could not be reached.
var errQuotaJournal = errors.New("quota journal unreachable: call not sent")

// errPausedMeanwhile marks a call that was not sent because a 429 paused
// the tenant while the call was being entered in the quota journal.
var errPausedMeanwhile = errors.New("the tenant was paused by a 429 meanwhile: call not sent")

// errDueMeanwhile marks a call that was not sent because its due time in
// the quota journal passed before it could go out (the process frozen or
// the machine suspended meanwhile): the other replicas count it ended by
// then, and the server would count it later.
var errDueMeanwhile = errors.New("the call's due time in the quota journal passed before it went out: call not sent")

// callSpec is one API call a request makes.
type callSpec struct {
	api string
	do  func(context.Context) *mde.Verdict
	// recheck, if set, runs before a call is repeated after an attempt
	// whose effect is unknown (it may have reached the API): a result from
	// it ends the call, so a lost answer never leads to a second action.
	recheck func(context.Context) (*offboard.Result, error)
	// again, if set, runs just before each attempt goes out, its place in
	// the quota taken and entered (which may have meant a wait: a 429's
	// pause, a full window): a result or an error from it ends the call
	// unsent.
	again func(context.Context) (*offboard.Result, error)
	// acquire, if set, waits for a repeat's permit in place of the
	// caller's own wait (the offboard call's: a cancel ends it).
	acquire func(context.Context) (*limiter.Permit, error)
	// record, if set, enters a permit's call in the quota journal in
	// place of Permit.Record, which may wait too (the offboard call's: a
	// cancel ends it).
	record func(context.Context, *limiter.Permit) (time.Time, error)
}

// permitFor waits for a place for spec's next call: by spec.acquire if
// set, else in the tenant's limiter of spec's API.
func (c *caller) permitFor(ctx context.Context, j *job, spec callSpec) (*limiter.Permit, error) {
	if spec.acquire != nil {
		return spec.acquire(ctx)
	}
	return c.acquire(ctx, j.t, spec.api, j.prio == offboard.Bulk)
}

// call makes one API call for a request and repeats it as the policy says.
// It returns the last verdict when it is the call's answer (success,
// already pending, final, not found); a failed result when retries ran
// out; an error when the request must be left for redelivery. permit, if
// given, is an offboard permit taken before; call spends or releases it.
func (c *caller) call(ctx context.Context, j *job, spec callSpec, permit *limiter.Permit) (*mde.Verdict, *offboard.Result, error) {
	t := j.t
	var n tries
	// again is the answer after which the call is to be made again:
	// counted a retry once its permit is had, so a stop during a 429's
	// pause, a backoff or the wait for a place counts none.
	var again *mde.Verdict
	for {
		if permit != nil && t.limits.PausedUntil().After(c.clock.Now()) {
			// Taken before a 429 paused the tenant: wait for the pause.
			permit.Release()
			permit = nil
		}
		if permit == nil {
			var err error
			if permit, err = c.permitFor(ctx, j, spec); err != nil {
				return nil, nil, err
			}
		}
		if again != nil {
			c.retried(spec.api, again)
			again = nil
		}
		if spec.api == mde.APIOffboard {
			j.attempts++
		}
		v, res, err := c.sendChecked(ctx, t, spec.api, permit, spec.do, spec.again, spec.record)
		permit = nil
		if (v == nil || !v.Sent) && spec.api == mde.APIOffboard {
			j.attempts-- // not sent: no token, say, or no connection
		}
		if errors.Is(err, errPausedMeanwhile) || errors.Is(err, errDueMeanwhile) {
			continue // not sent: a new place
		}
		if err != nil || res != nil {
			return nil, res, err
		}
		if spec.api == mde.APIOffboard && v.Sent {
			switch v.Class {
			case mde.Retry:
				j.mayHaveActed, j.lostAt = true, c.clock.Now()
			case mde.Success:
				j.mayHaveActed = true
			case mde.Throttled:
				j.throttled++
			}
		}
		if ctx.Err() != nil {
			return nil, nil, ctx.Err()
		}
		last := v
		v, res, err = c.after(ctx, j, spec, &n, v)
		if v != nil || res != nil || err != nil {
			return v, res, err
		}
		again = last
	}
}

// after acts on one attempt's verdict: all nil means try again.
func (c *caller) after(ctx context.Context, j *job, spec callSpec, n *tries, v *mde.Verdict) (*mde.Verdict, *offboard.Result, error) {
	t := j.t
	step := c.retry.decide(n, v, t.Cred != nil)
	unknown := spec.recheck != nil && v.Sent && v.Class == mde.Retry
	n.unknown = n.unknown || unknown
	switch {
	case step == nextDone:
		return v, nil, nil
	case step == nextGiveUp:
		if v.Class == mde.Throttled {
			// The last 429 too pauses the tenant and counts: the next
			// request must not call into the throttling.
			c.pause(ctx, t, spec.api, v, j.log)
		}
		if n.unknown { // an attempt may have worked after all, the last or an earlier one
			if res, err := spec.recheck(ctx); err != nil || res != nil {
				return nil, res, err
			}
		}
		msg := fmt.Sprintf("gave up after %d attempts: %s", n.retries+n.throttles, v.Error())
		return nil, j.failed(offboard.CodeAPIError, msg, v), nil
	}
	switch {
	case v.Class == mde.Throttled:
		c.pause(ctx, t, spec.api, v, j.log)
	case v.RefreshToken:
		// The cached token may have been revoked or the app's credentials
		// rotated: get a new token once and try again.
		if v.Status == http.StatusForbidden {
			// Its token may be one had before the roles were granted.
			t.repeats.log(j.log, zap.WarnLevel, "403:"+spec.api, "API answered 403, roles missing: getting a new token", zap.String("api", spec.api))
		} else {
			t.repeats.log(j.log, zap.WarnLevel, "401:"+spec.api, "API answered 401: getting a new token", zap.String("api", spec.api))
		}
		if err := t.Cred.TokenRefused(v); err != nil {
			//nolint:nilerr // the failure is the request's result
			return nil, j.failed(offboard.CodeUnauthorized, "the API refused the token and no new one could be had: "+err.Error(), v), nil
		}
	default:
		t.repeats.log(j.log, zap.WarnLevel, "failed:"+spec.api+":"+v.Reason.String(), "API call failed: trying again",
			zap.String("api", spec.api), zap.Stringer("reason", v.Reason), zap.String("answer", v.Error()))
		if err := c.backoffAtLeast(ctx, n.retries, v.RetryAfter); err != nil {
			return nil, nil, err
		}
		if unknown {
			// The call is made again only if the recheck did not find
			// what it did.
			res, err := spec.recheck(ctx)
			return nil, res, err
		}
	}
	return nil, nil, nil
}

// retried counts a call made again after the answer v, its permit had:
// not one whose request ends before (a new token refused, a recheck that
// found the action, a stop during a 429's pause or the backoff).
func (c *caller) retried(api string, v *mde.Verdict) {
	c.m.Retries.WithLabelValues(api, v.Reason.String()).Inc()
}

// pause stops the tenant's calls for a 429's Retry-After. It returns once
// the pause is in the quota journal: a worker killed right after (its
// request answered, say) must not leave the pause to its memory alone,
// or its restart and the other replicas call into the throttling.
func (c *caller) pause(ctx context.Context, t *tenantRun, api string, v *mde.Verdict, log *zap.Logger) {
	c.m.Throttled.WithLabelValues(t.name, api).Inc()
	t.limits.Pause(c.clock.Now(), v.RetryAfter)
	c.m.setThrottledUntil(t.name, t.limits.LastPause())
	log.Warn("throttled: tenant paused", zap.String("api", api), zap.Duration("retry_after", v.RetryAfter))
	if err := t.limits.Flush(ctx); err != nil && ctx.Err() == nil {
		// Still pending: the journal's writer tries again.
		log.Warn("throttled: the pause is not in the quota journal yet", zap.Error(err))
	}
}

// send makes one call, places it in the windows and counts it: completed
// when it may have reached the server, released when it surely did not (no
// token). A panic in do still gives the permit back, so the quota never
// shrinks. An error (errQuotaJournal, errPausedMeanwhile, errDueMeanwhile)
// says nothing was sent.
func (c *caller) send(ctx context.Context, t *tenantRun, api string, permit *limiter.Permit,
	do func(context.Context) *mde.Verdict,
) (*mde.Verdict, error) {
	v, _, err := c.sendChecked(ctx, t, api, permit, do, nil, nil)
	return v, err
}

// sendChecked is send with again, if set, run once the call's place is
// entered in the journal, just before the call goes out: a result or an
// error from it means no call (the verdict is nil), its place given back.
// An error is also errQuotaJournal, errPausedMeanwhile or
// errDueMeanwhile. record, if set, enters the call in the journal in
// place of Permit.Record (whose wait a stop ends, as it must end
// record's); an error of its own that is not the journal's (a
// *withdrawnError) is returned as it is.
func (c *caller) sendChecked(ctx context.Context, t *tenantRun, api string, permit *limiter.Permit,
	do func(context.Context) *mde.Verdict, again func(context.Context) (*offboard.Result, error),
	record func(context.Context, *limiter.Permit) (time.Time, error),
) (*mde.Verdict, *offboard.Result, error) {
	if record == nil {
		// The entry waits while a 429's pause lands meanwhile, until the
		// worker stops taking requests at most (as Worker.record's).
		record = func(ctx context.Context, p *limiter.Permit) (time.Time, error) {
			ctx, cancel := untilStop(ctx)
			defer cancel()
			return p.Record(ctx)
		}
	}
	// A panic before the call goes out (in again, say) gives the place
	// back; once the call is spent, this does nothing.
	defer permit.Release()
	check := func() (*offboard.Result, error) {
		if again == nil {
			return nil, nil
		}
		res, err := again(ctx)
		if err != nil || res != nil {
			permit.Release() // nothing was sent
		}
		return res, err
	}
	// Checked before the call's place is entered, and again after: the
	// entry may have waited (a window full, a 429 elsewhere).
	if res, err := check(); err != nil || res != nil {
		return nil, res, err
	}
	// With a shared quota, the call is entered in the journal first, and
	// must end by the time the journal says its answer is due.
	due, err := record(ctx, permit)
	if err != nil {
		permit.Release()
		if wd := (*withdrawnError)(nil); errors.As(err, &wd) || errors.Is(err, errCancelledAfterLostAnswer) {
			return nil, nil, err
		}
		return nil, nil, fmt.Errorf("%w: %w", errQuotaJournal, err)
	}
	if res, err := check(); err != nil || res != nil {
		return nil, res, err
	}
	if err := untilPlace(ctx, c.clock, permit); err != nil {
		return nil, nil, err // nothing was sent: the deferred Release gives the place back
	}
	// The entry's wait ends at the stop, but what the stop frees (the
	// place of a request that leaves) can end it first: no call starts
	// once the worker stopped taking requests.
	if err := stopped(ctx); err != nil {
		return nil, nil, err // nothing was sent: the deferred Release gives the place back
	}
	// Last, right before the call: the check may have read the device.
	if t.limits.PausedUntil().After(c.clock.Now()) {
		// A 429 came back while the entry was written: the entry stands
		// (counted as a call ended now, which only errs on the safe side),
		// but no call goes out during the pause.
		permit.CompleteNow()
		return nil, nil, errPausedMeanwhile
	}
	ctx, cancel, err := untilDue(ctx, c.clock, due)
	if err != nil {
		return nil, nil, err // nothing was sent: the deferred Release gives the place back
	}
	defer cancel()
	return c.sendNow(ctx, t, api, permit, do), nil, nil
}

// sendNow makes the call, its place entered, and places it in the
// windows (sent), with the places of its request sent again.
func (c *caller) sendNow(ctx context.Context, t *tenantRun, api string, permit *limiter.Permit,
	do func(context.Context) *mde.Verdict,
) (v *mde.Verdict) {
	var resent *resends
	if api != mde.APIOffboard {
		// An offboard is sent once: the transport cannot send it again
		// (its request has no GetBody), so it needs no place for that.
		ctx, resent = c.withResends(ctx, t, api, permit)
	}
	start := c.clock.Now()
	defer func() { c.sent(t, api, permit, resent, start, v) }()
	return do(ctx)
}

// withResends is ctx for a call whose request the transport may send
// again (a read, its connection dropped before the answer): a call of its
// own, which goes out only with a place of its own, entered as the
// call's is.
func (c *caller) withResends(ctx context.Context, t *tenantRun, api string, first *limiter.Permit) (context.Context, *resends) {
	r := &resends{}
	l := t.limits.API(api)
	return mde.WithResend(ctx, func() bool { return r.take(ctx, l, first, c.clock.Now()) }), r
}

// resends are the places a call took for its request sent again by the
// transport (mde.WithResend).
type resends struct {
	mu      sync.Mutex
	permits []*limiter.Permit
}

// take takes a place for a request sent again, and enters it in the
// quota journal, at once or not at all: the transport waits for it. The
// call's context already ends by the first send's due time, before this
// place's. The place is taken at the priority of the call's first
// (first): a tracking look's second send took a place as an offboard
// lookup does, out of the half of each window the looks leave to them.
func (r *resends) take(ctx context.Context, l *limiter.Limiter, first *limiter.Permit, now time.Time) bool {
	if l == nil {
		return false
	}
	p := l.TryAcquireAs(now, first)
	if p == nil {
		return false
	}
	if entered, err := p.TryRecord(ctx); err != nil || !entered {
		p.Release()
		return false
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.permits = append(r.permits, p)
	return true
}

// settle places the requests sent again as the call's own place is
// (sent): completed now, or given back if nothing was sent. A nil r
// has none.
func (r *resends) settle(v *mde.Verdict) {
	if r == nil {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, p := range r.permits {
		if v != nil && !v.Sent {
			p.Release()
		} else {
			p.CompleteNow()
		}
	}
}

// sent places a call that started at start in the windows and counts it,
// once do returned v (nil if it panicked): a call that went out completes
// its place now, one that did not gives it back; so do its requests sent
// again (resent).
func (c *caller) sent(t *tenantRun, api string, permit *limiter.Permit, resent *resends, start time.Time, v *mde.Verdict) {
	resent.settle(v)
	if v != nil && !v.Sent {
		permit.Release() // nothing was sent
		if reason := v.TokenFailure(); reason != "" {
			// Counted whatever made the call: a tracker's look, which
			// fails no request, is the only sign of it for a tenant
			// with nothing else to do.
			c.m.TokenFailures.WithLabelValues(t.name, reason).Inc()
		}
		if v.Reason == mde.ReasonNetwork || v.Reason == mde.ReasonTimeout {
			// No connection to the API host: no call, but the host's
			// trouble all the same, counted as a call that got no
			// answer, so that the error ratio still shows an API host
			// that cannot be reached.
			c.m.APICalls.WithLabelValues(t.name, api, "error").Inc()
		}
		return
	}
	permit.CompleteNow() // also when do panicked
	if v != nil && v.Answered() {
		c.m.APILatency.WithLabelValues(api).Observe(c.clock.Since(start).Seconds())
	}
	status := "error"
	if v != nil {
		status = v.StatusLabel()
	}
	c.m.APICalls.WithLabelValues(t.name, api, status).Inc()
}

// untilDue bounds ctx by a call's due time in the quota journal (zero:
// none), by whichever clock reaches it first; errDueMeanwhile once it has
// passed.
func untilDue(ctx context.Context, clock clockwork.Clock, due time.Time) (context.Context, context.CancelFunc, error) {
	if due.IsZero() {
		return ctx, func() {}, nil
	}
	left := untilBoth(clock, due)
	if left <= 0 {
		return ctx, func() {}, errDueMeanwhile
	}
	ctx, cancel := context.WithTimeout(ctx, left)
	return ctx, cancel, nil
}

// untilBoth is the time until t by the monotonic clock or by the wall
// clock, whichever is shorter: the monotonic clock stands still while the
// machine is suspended, and the other replicas read a call's due time by
// their wall clocks.
func untilBoth(clock clockwork.Clock, t time.Time) time.Duration {
	now := clock.Now()
	return min(t.Sub(now), t.Round(0).Sub(now.Round(0)))
}

// untilPlace waits until the permit's place frees. A permit taken ahead
// of its place (aheadPermit) is entered in the journal while the place is
// still taken, so that its call goes out the moment it frees, and not
// before.
func untilPlace(ctx context.Context, clock clockwork.Clock, p *limiter.Permit) error {
	if wait := p.NotBefore().Sub(clock.Now()); wait > 0 {
		return sleepCtx(ctx, clock, wait)
	}
	return nil
}

// acquire waits for quota, aside when it must wait. A bulk request waits
// behind (limiter.AcquireBehind): keeping its place while it waits, it
// would hold up a normal request fetched after it, and bulk never delays
// normal.
func (c *caller) acquire(ctx context.Context, t *tenantRun, api string, bulk bool) (*limiter.Permit, error) {
	start := c.clock.Now()
	defer func() { c.m.LimiterWait.WithLabelValues(api).Observe(c.clock.Since(start).Seconds()) }()
	l := t.limits.API(api)
	// A place free now, or within fetchAhead (a retry, or a request whose
	// place went elsewhere): the request keeps its room for so short a
	// wait. Otherwise it waits aside like any other.
	if p := l.AcquireWithin(ctx, fetchAhead, bulk); p != nil {
		return p, nil
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	acquire := l.Acquire
	if bulk {
		acquire = l.AcquireBehind
	}
	return asideFor(ctx, acquire, (*limiter.Permit).Release)
}

// backoff waits before retry n: capped exponential with full jitter.
func (c *caller) backoff(ctx context.Context, n int) error {
	return c.backoffAtLeast(ctx, n, 0)
}

// backoffAtLeast is backoff that waits no less than floor (the
// Retry-After of a 5xx), up to the backoff's cap: no wait between two
// attempts is longer than the policy allows, which the call's ledger
// entry and budget slot are sized for.
func (c *caller) backoffAtLeast(ctx context.Context, n int, floor time.Duration) error {
	d := max(c.delay(n), min(floor, c.retry.Max))
	return c.sleep(ctx, d)
}

// backoffUntil is backoff that ends by until when that comes sooner: a
// look that lasts until a time (an action that may not show in lists
// yet) takes its last look then, not a whole backoff later, holding its
// slot and its device that much longer.
func (c *caller) backoffUntil(ctx context.Context, n int, until time.Time) error {
	d := c.delay(n)
	if left := until.Sub(c.clock.Now()); left > 0 {
		d = min(d, left)
	}
	return c.sleep(ctx, d)
}

// delay is backoff n's wait: capped exponential with full jitter.
func (c *caller) delay(n int) time.Duration {
	d := c.retry.Base << min(n-1, 20)
	d = min(d, c.retry.Max)
	c.mu.Lock()
	defer c.mu.Unlock()
	return d/2 + time.Duration(c.rng.Int64N(int64(d/2)+1))
}

// sleep waits d, aside (without the request's room).
func (c *caller) sleep(ctx context.Context, d time.Duration) error {
	return aside(ctx, func(ctx context.Context) error { return sleepCtx(ctx, c.clock, d) })
}

// sleepCtx waits d on clock, or until ctx ends.
func sleepCtx(ctx context.Context, clock clockwork.Clock, d time.Duration) error {
	t := clock.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.Chan():
		return nil
	}
}
