package worker

import (
	"bytes"
	"container/heap"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"

	"github.com/contoso-secops/mde-offboard/internal/config"
	"github.com/contoso-secops/mde-offboard/internal/limiter"
	"github.com/contoso-secops/mde-offboard/internal/mde"
	"github.com/contoso-secops/mde-offboard/internal/queue"
	"github.com/contoso-secops/mde-offboard/offboard"
	"github.com/jonboulle/clockwork"
)

// ActionEvent is published on <prefix>.action.<tenant> each time a tracked
// Machine Action is seen in a new status.
type ActionEvent struct {
	Tenant         string          `json:"tenant"`
	RequestID      string          `json:"requestId"`
	MachineID      string          `json:"machineId"`
	ActionID       string          `json:"actionId"`
	Status         string          `json:"status"`
	PreviousStatus string          `json:"previousStatus,omitempty"`
	MachineAction  json.RawMessage `json:"machineAction"`
	ObservedAt     time.Time       `json:"observedAt"`
	// Final is true when tracking ends: the status is final or the action
	// outlived the tracking's maxAge (then Status is still unfinished).
	Final bool `json:"final"`
}

// tracked is the state of one followed action, kept in the ledger so that
// a restart goes on where it stopped.
type tracked struct {
	RequestID string        `json:"requestId"`
	MachineID string        `json:"machineId"`
	ActionID  string        `json:"actionId"`
	Status    string        `json:"status"`
	Since     time.Time     `json:"since"`
	Next      time.Time     `json:"next"`
	Interval  time.Duration `json:"interval"`
	Misses    int           `json:"misses,omitempty"` // 401s and 404s in a row
	// Final is the status of the final event published, or being
	// published, when the state was stored: the tracking has ended but
	// for its mark (see stop). Any later final event repeats that one,
	// under its message id: never a second, different final event.
	Final string `json:"final,omitempty"`
	// Seen is the status of the event published, or being published,
	// when the state was stored, if it is not Status: a change whose
	// event may be out, Status staying the one before so that a look
	// publishes it again should it not be. An end before that look
	// carries it, the last status seen: with Status, an action whose
	// InProgress event went out (its acknowledgement lost, or the
	// replica stopped before the state was written) ended Pending,
	// final, as if it had gone back.
	Seen string `json:"seen,omitempty"`
	// Published says that the final event is out and the ended mark is
	// all that is left to store: set when its write fails, so that the
	// next try stores the mark, with no look and no final event again.
	// Published again after the back-off, past the results stream's
	// duplicate window, the final event was stored twice.
	Published bool `json:"published,omitempty"`
	// rev is the ledger revision of this state that this replica's claim
	// (or its later writes) stored: what it is written over, so that a
	// replica overtaken during a look (see claim) neither publishes what
	// it read nor stores its state over the other's.
	rev uint64
}

// ended is what an ended tracking leaves in the ledger in place of the
// action's state: a result answered again from the ledger (a request sent
// again, days later) must not start following the action anew, with a
// Pending event after the final one. It has no actionId, so scans skip
// it; the ledger's TTL removes it, after the request id's own entry.
type ended struct {
	Ended time.Time `json:"ended"`
}

type trackQueue []*tracked

func (q trackQueue) Len() int           { return len(q) }
func (q trackQueue) Less(i, j int) bool { return q[i].Next.Before(q[j].Next) }
func (q trackQueue) Swap(i, j int)      { q[i], q[j] = q[j], q[i] }
func (q *trackQueue) Push(x any)        { *q = append(*q, x.(*tracked)) }
func (q *trackQueue) Pop() any          { old := *q; x := old[len(old)-1]; *q = old[:len(old)-1]; return x }

// tracker follows one tenant's created actions with GET
// /api/machineactions/{id}, under the machineactions limiter and never
// using more than half of its windows, so lookups for offboard calls always
// find quota.
//
// The followed actions live in the ledger; in memory a tracker holds only
// the soonest due of them (at most window), and scans the ledger again
// when those run out. Each action's interval stretches to followed/budget
// when that is longer, so the looks asked for fit the budget whatever
// the number followed.
type tracker struct {
	trackerConfig

	mu    sync.Mutex
	queue trackQueue      // the followed actions held in memory, soonest due first
	ids   map[string]bool // their ids, and the one being looked at
	// horizon: a followed action not held in memory is due no sooner than
	// this. Zero when every followed action is held.
	horizon  time.Time
	followed int // followed actions, held or not: the last scan, and changes since
	// scanned: when the last scan of the ledger began; every action
	// followed since before then, held or not, is counted by it.
	scanned time.Time
	// counted: the actions counted since the last scan, held or not.
	counted map[string]bool
	// waiting: when the look that waits for quota was due (zero: none
	// waits). It counts in the lag.
	waiting time.Time
	wake    chan struct{}
	// heldBy is why looks are held now (the tenant disputed), as last
	// logged; "" while they are not. Read and set by run's goroutine.
	heldBy string
	// forbidden says the last look the API answered was refused for a
	// permission (403), as last logged: the line is said on a change,
	// not at every look.
	forbidden atomic.Bool
}

// trackStore keeps followed actions' states (queue.Ledger).
type trackStore interface {
	TrackedState(ctx context.Context, tenant, actionID string) ([]byte, uint64, error)
	// TrackOver stores the state over revision rev and returns the one
	// stored; queue.ErrConflict if rev is not the latest any more.
	TrackOver(ctx context.Context, tenant, actionID string, state []byte, rev uint64) (uint64, error)
	// TrackNew stores the state of an action not followed yet;
	// queue.ErrConflict if it is.
	TrackNew(ctx context.Context, tenant, actionID string, state []byte) error
	// ScanTracked reads every followed action's state in one pass.
	ScanTracked(ctx context.Context, tenant string, fn func(state []byte) error) error
}

// actionReader reads actions under the tenant's machineactions quota.
type actionReader interface {
	// permit waits for quota at low priority: tracking never takes the
	// quota lookups for offboard calls need.
	permit(ctx context.Context) (*limiter.Permit, error)
	// get reads one action with the permit; the error is the quota
	// journal's only.
	get(ctx context.Context, p *limiter.Permit, actionID string) (*mde.Verdict, error)
	// throttled pauses the tenant for a 429.
	throttled(ctx context.Context, v *mde.Verdict)
	// refreshToken drops the token v's call sent after its 401.
	refreshToken(v *mde.Verdict)
	// budget is how many looks per second tracking may make (0: no limit).
	budget() float64
}

// trackerConfig is what a tracker needs: narrow interfaces, so it can be
// tested and reasoned about apart from the worker.
type trackerConfig struct {
	tenant   string
	cfg      config.Tracking
	store    trackStore
	actions  actionReader
	publish  func(ctx context.Context, subject, msgID string, data []byte) error
	subjects offboard.Subjects
	clock    clockwork.Clock
	log      *zap.Logger
	// notFoundCheck is how many 404s in a row are looked at again before
	// the action counts as gone (RetryPolicy.NotFoundCheck).
	notFoundCheck int
	// maxEvent is the largest action event published whole, its message
	// id counted in it, 0 for no bound: one larger carries its action cut
	// down (mde.CutAction), as a message of the server's could not hold
	// it. The server counts the headers in its max payload, and the
	// message id holds the action id, of any length.
	maxEvent int
	// window is how many followed actions are held in memory at most
	// (default trackWindow).
	window  int
	metrics *Metrics // nil: none
	// lagRefresh is how often the gauges are set while a look waits for
	// quota (default trackLagRefresh).
	lagRefresh time.Duration
	// clockOff says whether the clock is not to be trusted now: off the
	// NATS server's, or stepped and not measured again
	// (limiter.Shared.LookAtClock). nil: always trusted.
	clockOff func() bool
	// disputed says why no replica works the tenant now ("": it is not
	// so): a live replica's tenants file gives its name another Entra
	// tenant or application (Worker.disputed). nil: never.
	disputed func() string
}

// trackWindow is how many followed actions a tracker holds in memory
// unless told otherwise: a few hundred kilobytes.
const trackWindow = 2000

func newTracker(c trackerConfig) *tracker {
	if c.window <= 0 {
		c.window = trackWindow
	}
	if c.lagRefresh <= 0 {
		c.lagRefresh = trackLagRefresh
	}
	if c.metrics != nil {
		c.metrics.TrackedActions.WithLabelValues(c.tenant).Set(0)
		c.metrics.TrackingLag.WithLabelValues(c.tenant).Set(0)
	}
	return &tracker{trackerConfig: c, wake: make(chan struct{}, 1), ids: map[string]bool{}, counted: map[string]bool{}}
}

// add holds an action in memory that is not held yet; false if it is.
func (tr *tracker) add(a *tracked) bool {
	tr.mu.Lock()
	if tr.ids[a.ActionID] {
		tr.mu.Unlock()
		return false
	}
	kept := tr.keepLocked(a)
	tr.mu.Unlock()
	if kept {
		tr.signal()
	}
	return true
}

// done stops following an action.
func (tr *tracker) done(actionID string) {
	tr.mu.Lock()
	delete(tr.ids, actionID)
	delete(tr.counted, actionID)
	tr.followed = max(tr.followed-1, 0)
	tr.mu.Unlock()
}

// push schedules the next look at a held action.
func (tr *tracker) push(a *tracked) {
	tr.mu.Lock()
	kept := tr.keepLocked(a)
	tr.mu.Unlock()
	if kept {
		tr.signal()
	}
}

func (tr *tracker) signal() {
	select {
	case tr.wake <- struct{}{}:
	default:
	}
}

// keepLocked holds an action in memory if it is due before the horizon;
// otherwise it is left to the ledger, where a later scan finds it. Past
// the window, the latest due action is left out and the horizon moves
// down to it.
func (tr *tracker) keepLocked(a *tracked) bool {
	if !tr.horizon.IsZero() && !a.Next.Before(tr.horizon) {
		delete(tr.ids, a.ActionID)
		return false
	}
	tr.ids[a.ActionID] = true
	heap.Push(&tr.queue, a)
	for len(tr.queue) > tr.window {
		latest := 0
		for i, b := range tr.queue {
			if b.Next.After(tr.queue[latest].Next) {
				latest = i
			}
		}
		b := heap.Remove(&tr.queue, latest).(*tracked)
		delete(tr.ids, b.ActionID)
		tr.horizon = b.Next
	}
	return tr.ids[a.ActionID]
}

// spread is the shortest interval that lets every followed action be
// looked at within the budget: followed / budget.
func (tr *tracker) spread() time.Duration {
	b := tr.actions.budget()
	tr.mu.Lock()
	n := tr.followed
	tr.mu.Unlock()
	if b <= 0 {
		return 0
	}
	return time.Duration(float64(n) / b * float64(time.Second))
}

// nextLook is when an action is looked at next: after its own interval,
// stretched to spread when that is longer, and no later than the end of
// its tracking (maxAge).
func (tr *tracker) nextLook(st *tracked, now time.Time) time.Time {
	next := now.Add(max(bounded(st.Interval), tr.spread()))
	if end := st.Since.Add(time.Duration(tr.cfg.MaxAge)); next.After(end) {
		return end
	}
	return next
}

// storedNext is the next look d after now, as a state stored now may
// say it: no later than maxAge from now, which the start keeps shorter
// than the ledger's TTL (--ledger-ttl). A state is written at each look;
// one whose next look is further off than the TTL (a maxInterval longer,
// or a spread) is forgotten by the ledger first, and its tracking never
// ends with a final event. Before maxAge, nextLook holds a look to that.
func (tr *tracker) storedNext(now time.Time, d time.Duration) time.Time {
	return now.Add(min(d, bounded(time.Duration(tr.cfg.MaxAge))))
}

// bounded is an interval between looks as a tenants file allows it now:
// config.MinTrackingInterval at least, config.MaxTrackingInterval at
// most, so that doubled it cannot wrap round. A state in the ledger may
// hold any interval: one stored before those bounds, or by hand.
func bounded(d time.Duration) time.Duration {
	return min(max(d, config.MinTrackingInterval), config.MaxTrackingInterval)
}

// doubled is the interval after d: twice it, up to maxInterval.
func (tr *tracker) doubled(d time.Duration) time.Duration {
	return min(2*bounded(d), max(time.Duration(tr.cfg.MaxInterval), config.MinTrackingInterval))
}

// trackBudget is how many looks per second tracking may make under the
// machineactions windows: what AcquireLow leaves it of the tightest one.
func trackBudget(ws []limiter.Window) float64 {
	b := math.Inf(1)
	for _, w := range ws {
		if w.Length > 0 {
			b = min(b, float64(w.Count-w.Count/2)/w.Length.Seconds())
		}
	}
	if math.IsInf(b, 1) {
		return 0
	}
	return b
}

// track starts following an action that a result carries. The first
// event goes out before the state is stored: both are idempotent (message
// id, create-only), so a request redelivered after a crash in between
// completes what the first try began. A state stored, followed or ended,
// means the first event went out: nothing to do.
func (tr *tracker) track(ctx context.Context, res *offboard.Result) error {
	a, err := mde.ParseAction(res.MachineAction)
	if err != nil || a.Finished() {
		return nil //nolint:nilerr // nothing to follow
	}
	if data, rev, err := tr.store.TrackedState(ctx, tr.tenant, a.ID); err != nil || data != nil {
		if err == nil {
			tr.holdStored(data, rev)
		}
		return err
	}
	now := tr.clock.Now().UTC()
	st := &tracked{
		RequestID: res.RequestID, MachineID: res.MachineID, ActionID: a.ID, Status: mde.StatusSpelled(a.Status),
		Since: now, Interval: time.Duration(tr.cfg.FirstCheck),
	}
	if st.Status == "" {
		// The API may answer any member null, the status of the action
		// just created too: not finished, it is Pending, as the first
		// event says. Empty, that event had no status, under a message
		// id ending in ":", and the first look's Pending was published
		// as a change.
		st.Status = "Pending"
	}
	st.Next = tr.nextLook(st, now)
	if err := tr.publishAction(ctx, st, "", a.Raw, false); err != nil {
		if errors.Is(err, errEventTooLarge) {
			// Every event of the action would be refused, its final
			// one too: a start failing for ever would bring its
			// request back for ever.
			tr.log.Warn("tracked action's id too long for an action event: not followed",
				zap.String("request_id", res.RequestID), zap.Int("action_id_bytes", len(a.ID)))
			return nil
		}
		return err
	}
	data, err := json.Marshal(st)
	if err != nil {
		return err
	}
	if err := tr.store.TrackNew(ctx, tr.tenant, st.ActionID, data); err != nil {
		if errors.Is(err, queue.ErrConflict) {
			return nil // followed already
		}
		return err
	}
	tr.mu.Lock()
	tr.countLocked(st.ActionID)
	tr.mu.Unlock()
	tr.add(st)
	return nil
}

// countLocked counts an action followed since the last scan among those
// followed. Its id is kept, for holdStored, while fewer than window are:
// scans come only between looks, and a look may wait for quota for
// hours, while every action created is followed.
func (tr *tracker) countLocked(actionID string) {
	tr.followed++
	if len(tr.counted) < tr.window {
		tr.counted[actionID] = true
	}
}

// storedTracked is a followed action's state as the ledger keeps it;
// false for one this tracker did not write, or an ended tracking's mark
// (no action id).
func storedTracked(data []byte) (*tracked, bool) {
	st := new(tracked)
	if json.Unmarshal(data, st) != nil || st.ActionID == "" {
		return nil, false
	}
	return st, true
}

// holdStored holds in memory an action whose state the ledger has
// already, as of revision rev: stored by this replica while the answer
// was lost (NATS away a moment), the request answered again from the
// ledger, or by another replica. Left to the next scan of the ledger, its
// first look could come minutes late. Each look is claimed over the
// ledger's revision, so an action another replica follows too is looked
// at once. An ended tracking's mark (no action id) holds nothing. An
// action neither held nor counted since the last scan, and followed
// since that scan began (which did not count it), is counted among those
// followed, as TrackNew's is: one the scan counted, but not held for
// more due sooner, is not counted again each time its request is. With
// window ids counted (see countLocked), no more is: one counted whose id
// was not kept would be counted again at each answer; the next scan
// counts them all.
func (tr *tracker) holdStored(data []byte, rev uint64) {
	st, ok := storedTracked(data)
	if !ok {
		return
	}
	st.rev = rev
	tr.mu.Lock()
	if !tr.ids[st.ActionID] && !tr.counted[st.ActionID] && len(tr.counted) < tr.window && !st.Since.Before(tr.scanned) {
		tr.countLocked(st.ActionID)
	}
	tr.mu.Unlock()
	tr.add(st)
}

// save stores a followed action's state over the revision this replica
// claimed; queue.ErrConflict if another replica changed it since.
func (tr *tracker) save(ctx context.Context, st *tracked) error {
	data, err := json.Marshal(st)
	if err != nil {
		return err
	}
	return tr.storeOver(ctx, st, data)
}

func (tr *tracker) storeOver(ctx context.Context, st *tracked, data []byte) error {
	rev, err := tr.store.TrackOver(ctx, tr.tenant, st.ActionID, data, st.rev)
	if err != nil {
		return fmt.Errorf("store tracked state of %s: %w", st.ActionID, err)
	}
	st.rev = rev
	return nil
}

// overtaken hands an action whose state another replica changed during
// this one's look back to the claim, which reads what the other did: the
// look's answer, older than the other's, is dropped.
func (tr *tracker) overtaken(st *tracked) {
	st.Next = tr.clock.Now()
	tr.push(st)
}

// publishOwn publishes an event of a look this replica claimed, if it is
// still its own: a look lasts as long as its call waits (a 429's pause),
// longer than the interval its claim holds the action, and another
// replica may have looked since, seen a later status and even ended the
// tracking. The state is stored again first, moving its next look on
// (the claim renewed for the publish), over the revision claimed. The
// event is made before: one too large for a message (errEventTooLarge)
// leaves the state as it is.
func (tr *tracker) publishOwn(ctx context.Context, st *tracked, previous string, raw json.RawMessage, final bool) error {
	id, data, err := tr.actionEvent(st, previous, raw, final)
	if err != nil {
		return err
	}
	keep := *st
	keep.Status = previous
	claim := bounded(keep.Interval)
	if final {
		keep.Final = st.Status
		// The end is stored right after the event: should this replica
		// stop in between, another publishes the event again once the
		// claim runs out. Held for the action's interval (maxInterval
		// a day or more), it came past the results stream's duplicate
		// window, and was stored twice.
		claim = min(claim, trackEndClaim)
	} else {
		keep.Seen = st.Status
	}
	keep.Next = tr.storedNext(tr.clock.Now(), claim)
	if err := tr.save(ctx, &keep); err != nil {
		return err
	}
	st.rev, st.Final, st.Seen = keep.rev, keep.Final, keep.Seen
	return tr.publish(ctx, tr.subjects.Action(tr.tenant), id, data)
}

// trackEndClaim is the longest a replica holds an action while it
// publishes its final event and stores the end: far more than a publish
// waits (queue.StepTimeout), far less than the results stream's
// duplicate window.
const trackEndClaim = 5 * time.Minute

// trackEndRetry is the longest a failed end waits before it is tried
// again: the default maxInterval, well inside the results stream's
// duplicate window.
const trackEndRetry = time.Hour

func (tr *tracker) publishAction(ctx context.Context, st *tracked, previous string, raw json.RawMessage, final bool) error {
	id, data, err := tr.actionEvent(st, previous, raw, final)
	if err != nil {
		return err
	}
	return tr.publish(ctx, tr.subjects.Action(tr.tenant), id, data)
}

// actionEvent is the event of st's status, and its message id.
func (tr *tracker) actionEvent(st *tracked, previous string, raw json.RawMessage, final bool) (id string, data []byte, err error) {
	ev := ActionEvent{
		Tenant: tr.tenant, RequestID: st.RequestID, MachineID: st.MachineID, ActionID: st.ActionID,
		Status: st.Status, PreviousStatus: previous, MachineAction: raw, ObservedAt: tr.clock.Now().UTC(), Final: final,
	}
	id = offboard.ActionMsgID(tr.tenant, st.ActionID, st.Status)
	if final && !(mde.Action{Status: st.Status}).Finished() {
		// Tracking gave up on an action still unfinished, whether or not
		// its last look saw a new status: under the status's own id, an
		// event of a status seen before (InProgress again) would be
		// dropped by the stream as a repeat, and no final event stored.
		id += ":ended"
	}
	if data, err = marshalEvent(&ev); err != nil {
		return "", nil, err
	}
	if tr.maxEvent > 0 && len(data)+len(id) > tr.maxEvent {
		// Whole, it would be refused at every look until tracking's
		// maxAge, and the status change never reported.
		ev.MachineAction = mde.CutAction(raw)
		if data, err = marshalEvent(&ev); err != nil {
			return "", nil, err
		}
		if len(data)+len(id) > tr.maxEvent {
			return "", nil, fmt.Errorf("action event of %d bytes with its message id, more than %d: %w", len(data)+len(id), tr.maxEvent, errEventTooLarge)
		}
	}
	return id, data, nil
}

// errEventTooLarge says that an action event, its action cut down, is
// still larger than a message of the server's: its action id (twice in
// it, in its actionId and its message id) or its status is too long.
var errEventTooLarge = errors.New("too large for a message")

// marshalEvent encodes an action event with its action as the API gave
// it, as a result carries it (offboard.MarshalWith): json.Marshal would
// escape each <, > and & in it in six bytes, and an action cut down
// (mde.CutAction) could still outgrow a message.
func marshalEvent(ev *ActionEvent) ([]byte, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(ev); err != nil {
		return nil, err
	}
	return bytes.TrimSuffix(buf.Bytes(), []byte("\n")), nil
}

// trackReload is how often (at least, see reload) a tracker scans the
// ledger even when the actions it holds have not run out: for those
// another replica started following (before it died, say), and the count
// of followed actions.
const trackReload = 5 * time.Minute

// trackRetry is how soon a failed scan is tried again.
const trackRetry = 10 * time.Second

// run polls the tenant's tracked actions as they come due.
func (tr *tracker) run(ctx context.Context) {
	var nextLoad time.Time // zero: scan at once
	for {
		if tr.loadDue(nextLoad) {
			nextLoad = tr.reload(ctx)
		}
		due, wait := tr.next(nextLoad)
		if due == nil {
			timer := tr.clock.NewTimer(wait)
			select {
			case <-ctx.Done():
				timer.Stop()
				return
			case <-tr.wake:
			case <-timer.Chan():
			}
			timer.Stop()
			continue
		}
		if err := tr.poll(ctx, due); err != nil {
			if ctx.Err() != nil {
				return
			}
			tr.log.Warn("poll action", zap.String("action_id", due.ActionID), zap.Error(err))
			tr.backOff(ctx, due)
		}
	}
}

// backOff plans the next look at an action whose look failed (its event
// refused, the ledger not written): as after a look that said nothing,
// its interval doubles up to maxInterval, stretched to the spread. Tried
// again after its plain interval, an action whose event is refused at
// every look took a look each interval until maxAge, out of the budget
// the other followed actions share. Before the action's maxAge, the next
// look is held to it, as nextLook holds it: backed off past it, the
// action was given up as much as a maxInterval (or a spread) late. Past
// it, the look that failed was the end's, and would be tried again at
// once if held to it; it is held to maxAge from now (storedNext), so
// that the ledger keeps the state until then. The
// back-off is stored over the revision this replica holds, if any, as
// the next claim reads the interval from the ledger; unstored (the
// ledger failing too), it is kept in memory.
func (tr *tracker) backOff(ctx context.Context, st *tracked) {
	st.Interval = tr.doubled(st.Interval)
	now := tr.clock.Now()
	st.Next = tr.storedNext(now, max(st.Interval, tr.spread()))
	if retry := now.Add(trackEndRetry); st.Final != "" && st.Next.After(retry) {
		// Its final event may be out (its acknowledgement lost): tried
		// again past the results stream's duplicate window (a
		// maxInterval, or a spread, of a day or more), it was stored
		// twice.
		st.Next = retry
	}
	if end := st.Since.Add(time.Duration(tr.cfg.MaxAge)); end.After(now) && st.Next.After(end) {
		st.Next = end
	}
	if st.rev != 0 {
		if err := tr.save(ctx, st); err != nil {
			if errors.Is(err, queue.ErrConflict) {
				tr.overtaken(st)
				return
			}
			tr.log.Warn("store a tracked action's back-off", zap.String("action_id", st.ActionID), zap.Error(err))
		}
	}
	tr.push(st)
}

// loadDue says whether to scan the ledger now: at nextLoad, or when the
// horizon has come and no action held in memory is due, since then the
// soonest due may be among those not held.
func (tr *tracker) loadDue(nextLoad time.Time) bool {
	now := tr.clock.Now()
	if !now.Before(nextLoad) {
		return true
	}
	tr.mu.Lock()
	defer tr.mu.Unlock()
	return !tr.horizon.IsZero() && !now.Before(tr.horizon) &&
		(len(tr.queue) == 0 || tr.queue[0].Next.After(now))
}

// next takes the held action that is due, if any, or says how long to
// wait; it also refreshes the gauges.
func (tr *tracker) next(nextLoad time.Time) (*tracked, time.Duration) {
	now := tr.clock.Now()
	tr.mu.Lock()
	defer tr.mu.Unlock()
	if tr.metrics != nil {
		tr.setGaugesLocked(now)
	}
	wait := nextLoad.Sub(now)
	if !tr.horizon.IsZero() {
		wait = min(wait, tr.horizon.Sub(now))
	}
	if len(tr.queue) > 0 {
		d := tr.queue[0].Next.Sub(now)
		if d <= 0 {
			return heap.Pop(&tr.queue).(*tracked), 0
		}
		wait = min(wait, d)
	}
	return nil, wait
}

// setGaugesLocked sets the followed actions' gauges: their count and the
// lag. Both are set while a look waits for quota too, which may last
// hours while the actions created meanwhile are followed.
func (tr *tracker) setGaugesLocked(now time.Time) {
	tr.setLagLocked(now)
	tr.metrics.TrackedActions.WithLabelValues(tr.tenant).Set(float64(tr.followed))
}

// setLagLocked sets the lag gauge: how overdue at now the most overdue
// look is, among the one waiting for quota, the held ones and those left
// to the ledger (none before the horizon).
func (tr *tracker) setLagLocked(now time.Time) {
	soonest := tr.horizon
	for _, due := range []time.Time{tr.waiting, tr.peekLocked()} {
		if !due.IsZero() && (soonest.IsZero() || due.Before(soonest)) {
			soonest = due
		}
	}
	lag := 0.0
	if !soonest.IsZero() && soonest.Before(now) {
		lag = now.Sub(soonest).Seconds()
	}
	tr.metrics.TrackingLag.WithLabelValues(tr.tenant).Set(lag)
}

// peekLocked is when the soonest held action is due; zero if none is held.
func (tr *tracker) peekLocked() time.Time {
	if len(tr.queue) == 0 {
		return time.Time{}
	}
	return tr.queue[0].Next
}

// trackLagRefresh is how often the gauges are set, and the held
// actions' ends looked for, while a look waits for quota: the wait lasts
// as long as other calls take the quota, which is what the lag must
// show, and an end takes no quota.
const trackLagRefresh = 5 * time.Second

// trackStateCheck is how soon a look waiting for quota reads its
// action's state again (see permit), the wait doubling up to the
// gauges' refresh.
const trackStateCheck = 100 * time.Millisecond

// errEndDue says that a look's wait for quota was cut: a held action has
// come to its end at maxAge (see endDue).
var errEndDue = errors.New("a tracked action's end came while a look waited for quota")

// errChangedMeanwhile says that a look's wait for quota was cut: the
// action's state in the ledger changed since it was read, as another
// replica claimed its look or ended its tracking.
var errChangedMeanwhile = errors.New("a tracked action's state changed while its look waited for quota")

// permit waits for quota for a look at st, whose state was read at
// revision rev, the gauges kept current meanwhile. The refresh is paced
// in real time, as scrapes come; the lag itself is read on the tracker's
// clock. The wait ends with errEndDue when a held action, st included,
// comes to its end at maxAge: ending takes no quota, and while the
// offboard lookups took it all, every end waited with the look, for
// hours. It ends with errChangedMeanwhile when st's state is no longer
// at rev: another replica, with quota, looked at it or ended it; the
// state is read after trackStateCheck, then at twice the wait before,
// up to the refresh.
func (tr *tracker) permit(ctx context.Context, st *tracked, rev uint64) (*limiter.Permit, error) {
	if tr.metrics != nil {
		tr.mu.Lock()
		tr.waiting = st.Next
		tr.mu.Unlock()
	}
	wctx, cancel := context.WithCancelCause(ctx)
	ticker := time.NewTicker(tr.lagRefresh)
	// The state is read again soon, then less often, up to the refresh:
	// two replicas read an action due at the same moment, and the one
	// without quota, which waited a refresh for each look the other
	// made, fell behind when they came more often.
	reread := min(trackStateCheck, tr.lagRefresh)
	check := time.NewTimer(reread)
	stopped := make(chan struct{})
	go func() {
		defer close(stopped)
		defer check.Stop()
		for {
			select {
			case <-wctx.Done():
				return
			case <-check.C:
				if _, at, err := tr.store.TrackedState(wctx, tr.tenant, st.ActionID); err == nil && at != rev {
					cancel(errChangedMeanwhile)
					return
				}
				reread = min(2*reread, tr.lagRefresh)
				check.Reset(reread)
			case <-ticker.C:
				now := tr.clock.Now()
				if tr.metrics != nil {
					tr.mu.Lock()
					tr.setGaugesLocked(now)
					tr.mu.Unlock()
				}
				if !now.Before(tr.nextEnd(st)) {
					cancel(errEndDue)
					return
				}
			}
		}
	}()
	p, err := tr.actions.permit(wctx)
	cancel(nil)
	<-stopped
	ticker.Stop()
	if tr.metrics != nil {
		tr.mu.Lock()
		tr.waiting = time.Time{}
		tr.mu.Unlock()
	}
	if err != nil && ctx.Err() == nil {
		if cause := context.Cause(wctx); errors.Is(cause, errEndDue) || errors.Is(cause, errChangedMeanwhile) {
			return nil, cause
		}
	}
	return p, err
}

// nextEnd is when the soonest end at maxAge of st or a held action comes:
// a held action's at its next look, if that is later (a failed end backs
// off). One whose final event is out (Final) ends at its next look: a
// look was only to send that event again with the action as it is now.
func (tr *tracker) nextEnd(st *tracked) time.Time {
	maxAge := time.Duration(tr.cfg.MaxAge)
	soonest := st.Since.Add(maxAge)
	if st.Final != "" {
		soonest = st.Next
	}
	tr.mu.Lock()
	defer tr.mu.Unlock()
	for _, a := range tr.queue {
		end := a.Since.Add(maxAge)
		if a.Final != "" {
			end = a.Next
		}
		if a.Next.After(end) {
			end = a.Next
		}
		if end.Before(soonest) {
			soonest = end
		}
	}
	return soonest
}

// endDue gives up, without a look, the held actions that are due and
// older than maxAge, or whose final event is out, once the clock is
// trusted (see endUnlooked).
func (tr *tracker) endDue(ctx context.Context) error {
	if !tr.clockTrusted() {
		return sleepCtx(ctx, tr.clock, trackClockWait) // for the clock to be trusted again
	}
	now := tr.clock.Now()
	var due []*tracked
	tr.mu.Lock()
	kept := tr.queue[:0]
	for _, a := range tr.queue {
		if !a.Next.After(now) && (tr.expired(a) || a.Final != "") {
			due = append(due, a) // its id stays: it is being looked at
		} else {
			kept = append(kept, a)
		}
	}
	clear(tr.queue[len(kept):])
	tr.queue = kept
	heap.Init(&tr.queue)
	tr.mu.Unlock()
	for _, a := range due {
		if err := tr.endUnlooked(ctx, a); err != nil {
			if ctx.Err() != nil {
				return err
			}
			tr.log.Warn("end tracked action", zap.String("action_id", a.ActionID), zap.Error(err))
			tr.backOff(ctx, a)
		}
	}
	return nil
}

// reload scans the ledger and returns when to scan next.
func (tr *tracker) reload(ctx context.Context) time.Time {
	start := tr.clock.Now()
	if err := tr.load(ctx); err != nil {
		if ctx.Err() == nil {
			tr.log.Warn("load tracked actions", zap.Error(err))
		}
		// Hold what is held; the next scan finds the rest.
		tr.mu.Lock()
		tr.horizon = time.Time{}
		tr.mu.Unlock()
		return tr.clock.Now().Add(trackRetry)
	}
	tr.mu.Lock()
	held, followed := len(tr.queue), tr.followed
	tr.mu.Unlock()
	tr.log.Info("tracked actions loaded", zap.Int("followed", followed), zap.Int("held", held),
		zap.Duration("took", tr.clock.Since(start)))
	// A scan reads every followed action: with many, scan no more often
	// than each is looked at. The held ones running out scans sooner.
	return tr.clock.Now().Add(max(trackReload, tr.spread()))
}

// load scans the ledger for the soonest due followed actions and holds
// them (at most window), instead of those held so far; it also counts
// them all. Memory stays within the window whatever the ledger holds.
func (tr *tracker) load(ctx context.Context) error {
	start := tr.clock.Now()
	var soonest latestFirst
	n := 0
	err := tr.store.ScanTracked(ctx, tr.tenant, func(data []byte) error {
		st, ok := storedTracked(data)
		if !ok {
			return nil // not a state this tracker wrote: skip it
		}
		n++
		soonest.offer(st, tr.window)
		return nil
	})
	if err != nil {
		return err
	}
	tr.mu.Lock()
	defer tr.mu.Unlock()
	old := tr.queue
	tr.horizon = time.Time{}
	if n > len(soonest) { // some were left out: none is due before the latest held
		tr.horizon = soonest[0].Next
	}
	tr.queue = trackQueue(soonest)
	heap.Init(&tr.queue)
	tr.ids = make(map[string]bool, len(tr.queue))
	for _, a := range tr.queue {
		tr.ids[a.ActionID] = true
	}
	// Actions started during the scan may have been missed by it: those
	// begun since it began, and those counted since the last scan, whose
	// state may have been stored after the scan read the ledger while
	// their start (Since) came before it, their first event on its way.
	for _, a := range old {
		if (!a.Since.Before(start) || tr.counted[a.ActionID]) && !tr.ids[a.ActionID] {
			n++
			tr.keepLocked(a)
		}
	}
	tr.followed = n
	tr.scanned = start
	tr.counted = map[string]bool{}
	return nil
}

// latestFirst holds the soonest due actions of a scan, the latest due of
// them on top, so that a sooner one takes its place.
type latestFirst []*tracked

func (q latestFirst) Len() int           { return len(q) }
func (q latestFirst) Less(i, j int) bool { return q[i].Next.After(q[j].Next) }
func (q latestFirst) Swap(i, j int)      { q[i], q[j] = q[j], q[i] }
func (q *latestFirst) Push(x any)        { *q = append(*q, x.(*tracked)) }
func (q *latestFirst) Pop() any          { old := *q; x := old[len(old)-1]; *q = old[:len(old)-1]; return x }

// offer keeps st if it is among the limit soonest due seen so far.
func (q *latestFirst) offer(st *tracked, limit int) {
	switch {
	case len(*q) < limit:
		heap.Push(q, st)
	case st.Next.Before((*q)[0].Next):
		(*q)[0] = st
		heap.Fix(q, 0)
	}
}

// claim makes this replica the one to look at the action now. Every
// replica may follow the same actions (each loads them all from the
// ledger); the ledger says when the next look is due, and a replica moves
// it on (compare-and-swap) before looking, so each look is made once.
// false: not this replica's look, or the tracking has ended.
func (tr *tracker) claim(ctx context.Context, st *tracked) (bool, error) {
	cur, rev, due, err := tr.dueInLedger(ctx, st)
	if err != nil || !due {
		return false, err
	}
	return tr.claimOver(ctx, st, cur, rev)
}

// dueInLedger reads the action's state, as of revision rev, and says
// whether its look is due there. Not due, st is held again as the ledger
// has it (another replica looked, or is looking), or let go (another
// replica ended the tracking, or the state is not one this tracker
// wrote).
func (tr *tracker) dueInLedger(ctx context.Context, st *tracked) (cur tracked, rev uint64, due bool, err error) {
	data, rev, err := tr.store.TrackedState(ctx, tr.tenant, st.ActionID)
	if err != nil {
		return cur, 0, false, err
	}
	if data != nil {
		if err := json.Unmarshal(data, &cur); err != nil {
			// Not a state this tracker wrote (by hand, by another
			// release): left alone, as a scan leaves it. A failed look,
			// it was backed off over a revision gone, taken for another
			// replica's look and claimed again at once, in a loop.
			tr.log.Warn("tracked action's state cannot be read: not followed", zap.String("action_id", st.ActionID), zap.Error(err))
			tr.done(st.ActionID)
			return cur, 0, false, nil
		}
	}
	if cur.ActionID == "" { // another replica ended the tracking
		tr.done(st.ActionID)
		return cur, 0, false, nil
	}
	if cur.Next.After(tr.clock.Now()) { // another replica looked, or is looking
		*st = cur
		tr.push(st)
		return cur, 0, false, nil
	}
	return cur, rev, true, nil
}

// claimOver moves the next look of cur, the state read at revision rev,
// on in the ledger: the look is this replica's. false: another replica
// wrote the state since.
func (tr *tracker) claimOver(ctx context.Context, st *tracked, cur tracked, rev uint64) (bool, error) {
	now := tr.clock.Now()
	cur.Next = tr.storedNext(now, bounded(cur.Interval))
	data, err := json.Marshal(cur)
	if err != nil {
		return false, err
	}
	rev, err = tr.store.TrackOver(ctx, tr.tenant, st.ActionID, data, rev)
	if err != nil {
		if errors.Is(err, queue.ErrConflict) { // another replica claimed it first
			st.Next = now
			tr.push(st)
			return false, nil
		}
		return false, err
	}
	if st.Published && st.Final != "" && cur.Final == st.Final {
		// Known here only: the write that said so failed.
		cur.Published = true
	}
	*st = cur
	st.rev = rev
	return true, nil
}

// poll reads one action, publishes a status change, and schedules the next
// look or ends the tracking.
func (tr *tracker) poll(ctx context.Context, st *tracked) error {
	permit, err := tr.claimLook(ctx, st)
	if err != nil || permit == nil {
		return err
	}
	v, err := tr.actions.get(ctx, permit, st.ActionID)
	if err != nil {
		return err
	}
	now := tr.clock.Now().UTC()
	switch {
	case v.Class == mde.Throttled:
		tr.actions.throttled(ctx, v)
		return tr.reschedule(ctx, st, now)
	case v.Reason == mde.ReasonUnauthorized || v.Reason == mde.ReasonForbidden || v.Reason == mde.ReasonCredentialsRejected:
		// Credentials or permission trouble (the API refusing the token,
		// or the login host the credentials, when no call went out) says
		// nothing about the action: keep following it (maxAge still
		// bounds that), backing off as a look that saw no change does:
		// each look asks the login host for a token, or spends a call.
		if v.Reason == mde.ReasonForbidden {
			tr.sayForbidden(v)
		}
		if v.RefreshToken {
			tr.actions.refreshToken(v)
		}
		st.Interval = tr.doubled(st.Interval)
		return tr.reschedule(ctx, st, now)
	case notTheAPIs(v):
		// Not the API's answer (a proxy's or web server's page, an
		// apiBaseURL with a path too many): it says nothing about the
		// action, which is neither gone nor refused for it; looked at
		// again later each time, as above.
		tr.log.Warn("look at a tracked action: an answer that is not the API's", zap.String("action_id", st.ActionID), zap.String("answer", v.Error()))
		st.Interval = tr.doubled(st.Interval)
		return tr.reschedule(ctx, st, now)
	case v.Class == mde.NotFound && st.Misses < tr.notFoundCheck:
		// A fresh action can read 404 for a moment: look again before
		// giving up.
		st.Misses++
		return tr.reschedule(ctx, st, now)
	case v.Class == mde.NotFound, v.Class == mde.Final:
		// The action is gone or unreadable: a last event says tracking ends.
		tr.log.Warn("tracked action unreadable: tracking stops", zap.String("action_id", st.ActionID), zap.String("answer", v.Error()))
		return tr.end(ctx, st)
	case v.Class != mde.Success:
		return tr.reschedule(ctx, st, now)
	}
	if tr.forbidden.CompareAndSwap(true, false) {
		tr.log.Info("action tracking: actions can be read again", zap.String("api", mde.APIMachineActions))
	}
	return tr.observe(ctx, st, v, now)
}

// sayForbidden logs, once until a read works again, that the API refused
// a look at an action for a permission: the tenant's application lacks
// Machine.Read.All, or its admin consent. No request fails for it, so
// nothing else tells the operator why no status change is published.
// The answer is the API's status, code and message: never the token.
func (tr *tracker) sayForbidden(v *mde.Verdict) {
	if !tr.forbidden.CompareAndSwap(false, true) {
		return
	}
	tr.log.Warn("action tracking: the API refused to read actions (403): the tenant's application lacks the permission Machine.Read.All, or its admin consent; "+
		"actions stay followed, and no status change is published until it is granted",
		zap.String("api", mde.APIMachineActions), zap.String("answer", v.Error()))
}

// claimLook readies a look at st: its permit, then its claim. nil and no
// error: no look is made (the tracking ended, or the look is another
// replica's, or waits).
func (tr *tracker) claimLook(ctx context.Context, st *tracked) (*limiter.Permit, error) {
	if tr.expired(st) { // no look, so no quota: ending never waits for it
		return nil, tr.endUnlooked(ctx, st)
	}
	if tr.lookHeld() {
		// Its look stays due, so the lag shows the looks held; the held
		// actions that reach maxAge end meanwhile, as no call is made.
		tr.push(st)
		if err := tr.endDue(ctx); err != nil {
			return nil, err
		}
		return nil, sleepCtx(ctx, tr.clock, trackHeldWait)
	}
	// The ledger first: a look another replica made, or is making, waits
	// for no quota here. Waited for, it was counted in this replica's lag
	// as overdue for as long as this one got no quota (its clock off, its
	// quota journal not read), while the others looked on time.
	cur, rev, due, err := tr.dueInLedger(ctx, st)
	if err != nil || !due {
		return nil, err
	}
	if cur.Final != "" {
		// Its final event is out, or was on its way when the replica
		// that published it stopped before storing the end. A look is
		// made only if quota comes within the gauges' refresh (see
		// nextEnd); else the end publishes the event again without one:
		// waiting for quota while the offboard lookups took it, the
		// event came again only at maxAge, past the results stream's
		// duplicate window.
		st.Final = cur.Final
	}
	// The permit, then the claim over the revision read: a claim held
	// while waiting for quota could run out, and another replica look at
	// the same time.
	permit, err := tr.permit(ctx, st, rev)
	switch {
	case errors.Is(err, errEndDue):
		tr.push(st)
		return nil, tr.endDue(ctx)
	case errors.Is(err, errChangedMeanwhile):
		// Read again at once: another replica's look, or its end.
		st.Next = tr.clock.Now()
		tr.push(st)
		return nil, nil
	case err != nil:
		return nil, err
	}
	if mine, err := tr.claimOver(ctx, st, cur, rev); err != nil || !mine {
		permit.Release()
		return nil, err
	}
	if st.Published { // its final event is out: its end alone is left
		permit.Release()
		return nil, tr.stop(ctx, st)
	}
	// Too old by a clock not trusted (stepped since the permit), the
	// look goes on: its call waits for the clock, and the answer's
	// observe ends the tracking if the action is old by then.
	if tr.expired(st) && tr.clockTrusted() {
		permit.Release()
		return nil, tr.end(ctx, st) // too old, whatever the API answers lately
	}
	return permit, nil
}

// trackHeldWait is how often looks held (see lookHeld) are tried again.
const trackHeldWait = time.Minute

// lookHeld says whether looks wait: while the tenant is disputed, the
// credentials this replica holds for its name may be another Entra
// tenant's, which answers the API's own 404 for every action of the
// tenant meant, and four of them give an action up as gone, final event
// and ended mark, for good. Ends at maxAge make no call, and go on.
func (tr *tracker) lookHeld() bool {
	why := ""
	if tr.disputed != nil {
		why = tr.disputed()
	}
	if why != tr.heldBy {
		if why != "" {
			tr.log.Warn("tracked actions not looked at while the tenant is disputed", zap.String("reason", why))
		} else {
			tr.log.Info("tracked actions looked at again: the tenant is no longer disputed")
		}
		tr.heldBy = why
	}
	return why != ""
}

// notTheAPIs says whether a refusal is not the API's own answer: a 404
// the API did not write, or another 4xx without the API's error object
// (an egress proxy asking for its credentials, a gateway's page). Only
// the API's own refusal ends a tracking.
func notTheAPIs(v *mde.Verdict) bool {
	switch v.Class {
	case mde.NotFound:
		return v.FailureCode == offboard.CodeAPIRejected
	case mde.Final:
		return v.Answered() && !v.APIsOwn()
	}
	return false
}

// endUnlooked gives up an action older than maxAge without a look, once
// the clock is trusted: older than maxAge by a clock stepped ahead, it
// would be given up for good. No call starts either meanwhile.
func (tr *tracker) endUnlooked(ctx context.Context, st *tracked) error {
	if !tr.clockTrusted() {
		// Another replica, its clock trusted, may end it meanwhile, or
		// have ended it: held as due here, it was counted in this
		// replica's lag until the next scan, N / B on.
		if _, _, due, err := tr.dueInLedger(ctx, st); err != nil || !due {
			return err
		}
		tr.push(st)
		return sleepCtx(ctx, tr.clock, trackClockWait) // for the clock to be trusted again
	}
	if mine, err := tr.claim(ctx, st); err != nil || !mine {
		return err
	}
	return tr.end(ctx, st)
}

// clockTrusted says whether the clock may end a tracking at maxAge: not
// off the NATS server's, nor stepped and not measured again. A step
// during a look (a time sync while its call is out) is seen when the
// answer comes: the action, minutes old, looks older than maxAge then.
func (tr *tracker) clockTrusted() bool {
	return tr.clockOff == nil || !tr.clockOff()
}

// trackClockWait is how often a tracker looks at a clock not trusted
// before it gives an action up.
const trackClockWait = time.Second

// expired says whether the action is older than maxAge: its tracking ends
// whatever the API answers.
func (tr *tracker) expired(st *tracked) bool {
	return tr.clock.Since(st.Since) >= time.Duration(tr.cfg.MaxAge)
}

// observe publishes what a successful look saw, and ends the tracking or
// plans the next look.
func (tr *tracker) observe(ctx context.Context, st *tracked, v *mde.Verdict, now time.Time) error {
	action, err := mde.ParseAction(v.Body)
	if err == nil {
		err = answersFor(st, action)
	}
	if err != nil {
		// Not this action as the API gives it (a proxy's page answered
		// 200, another action): it says nothing about the action, which
		// is looked at again later each time, as after a 404 page.
		tr.log.Warn("look at a tracked action: an unreadable answer", zap.String("action_id", st.ActionID), zap.Error(err))
		st.Interval = tr.doubled(st.Interval)
		return tr.reschedule(ctx, st, now)
	}
	st.Misses = 0
	// Compared and published as documented, whatever the case the API
	// wrote it in: "pending" is no change from Pending.
	action.Status = mde.StatusSpelled(action.Status)
	if action.Status == "" { // read without a status: no change known, until maxAge at most
		action.Status = st.Status
		if st.Seen != "" {
			// No change from the last status seen, whose event may not
			// be out: taken for the status stored before it, the look
			// cleared it, and the end carried that older status, as if
			// the action had gone back.
			action.Status = st.Seen
		}
	}
	if st.Final != "" && action.Status != st.Final {
		// Its final event went out (or was on its way) with another
		// status: that one stays the last.
		return tr.end(ctx, st)
	}
	// Past maxAge by a clock stepped during the look, the action is
	// followed on: its next look is due at once, and ends it once the
	// clock is trusted (endUnlooked), if it is old by then.
	expired := now.Sub(st.Since) >= time.Duration(tr.cfg.MaxAge) && tr.clockTrusted()
	// An action whose final event is out (Final, the status read here)
	// ends with that event again: an end that failed left Status the one
	// before the last status seen, and the look published that status as
	// a change, not final, after the final event.
	final := action.Finished() || expired || st.Final != ""
	if action.Status != st.Status || final {
		before, previous := st.Status, st.Status
		if st.Seen != "" && (action.Status != st.Seen || final) {
			// The status before this one is the last seen, whose event
			// may be out; the same status seen again is published as it
			// was, from the one before it, so that a repeat is dropped,
			// but for an end, which carries it as an end without a look
			// does (see end).
			previous = st.Seen
		}
		st.Status = action.Status
		if err := tr.publishOwn(ctx, st, previous, action.Raw, final); err != nil {
			st.Status = before
			if errors.Is(err, errEventTooLarge) {
				return tr.statusTooLong(ctx, st, len(action.Status), expired, now)
			}
			return tr.settle(st, err)
		}
	}
	// What this look read, published or no change, is the last status
	// seen, whatever an earlier look's event left in Seen.
	st.Seen = ""
	if final {
		return tr.stop(ctx, st)
	}
	st.Interval = tr.doubled(st.Interval)
	return tr.reschedule(ctx, st, now)
}

// statusTooLong takes a look that read a status no event can carry
// (hundreds of kilobytes of it: the API, or a proxy before it, answering
// garbage) as an unreadable answer: the action is looked at again later,
// or given up at maxAge with its last status. Stored as the final
// event's, such a status made every try to end the tracking fail, for
// ever.
func (tr *tracker) statusTooLong(ctx context.Context, st *tracked, size int, expired bool, now time.Time) error {
	tr.log.Warn("look at a tracked action: a status too long for an action event", zap.String("action_id", st.ActionID), zap.Int("status_bytes", size))
	if expired {
		return tr.end(ctx, st)
	}
	st.Interval = tr.doubled(st.Interval)
	return tr.reschedule(ctx, st, now)
}

// answersFor refuses an answer that is not of the action looked at:
// another action's id, or another device's action. Its status is not
// this action's, and published it would say, final, that this action
// ended; like an unreadable answer, it is logged and looked at again. A
// machineId left out (null, as on fresh actions) says nothing.
func answersFor(st *tracked, a mde.Action) error {
	if !strings.EqualFold(a.ID, st.ActionID) {
		return fmt.Errorf("read machine action %s: the answer is of action %s", st.ActionID, offboard.Quote(a.ID))
	}
	if a.MachineID != "" && st.MachineID != "" && !strings.EqualFold(a.MachineID, st.MachineID) {
		return fmt.Errorf("read machine action %s: the answer is of device %s, not %s", st.ActionID, offboard.Quote(a.MachineID), st.MachineID)
	}
	return nil
}

// end gives up on an unfinished action: a last event, marked final,
// says so. One whose final event went out before its tracking's end was
// stored (the replica stopped, or the ledger's write lost, in between)
// gets that event again, under its message id, so the stream drops it:
// given up with the status stored before, it had a second final event.
// One known to have its final event out (Published) gets its end alone.
func (tr *tracker) end(ctx context.Context, st *tracked) error {
	if st.Published {
		return tr.stop(ctx, st)
	}
	status, previous := st.Status, st.Status
	switch {
	case st.Final != "":
		st.Status = st.Final
		if st.Seen != "" {
			// Published with a last status seen, the final event named
			// it as its previous one; a failed try leaves Status the
			// one stored before that status's event.
			previous = st.Seen
		}
	case st.Seen != "":
		// The last status seen, unchanged since, as an end without a
		// look carries it.
		st.Status, previous = st.Seen, st.Seen
	}
	if err := tr.publishOwn(ctx, st, previous, nil, true); err != nil {
		st.Status = status
		return tr.settle(st, err)
	}
	return tr.stop(ctx, st)
}

// settle takes an error of a write over the claimed revision: a conflict
// means another replica overtook this one's look (see overtaken), not a
// failure.
func (tr *tracker) settle(st *tracked, err error) error {
	if errors.Is(err, queue.ErrConflict) {
		tr.overtaken(st)
		return nil
	}
	return err
}

// stop ends the tracking once its final event is out: the action's state
// gives way to an ended mark (see ended).
func (tr *tracker) stop(ctx context.Context, st *tracked) error {
	data, err := json.Marshal(ended{Ended: tr.clock.Now().UTC()})
	if err != nil {
		return err
	}
	if err := tr.storeOver(ctx, st, data); err != nil {
		if !errors.Is(err, queue.ErrConflict) {
			st.Published = true // stored by the back-off (see run)
		}
		return tr.settle(st, err)
	}
	tr.done(st.ActionID)
	return nil
}

// reschedule saves a followed action's state and plans its next look,
// after a look that saw no change or said nothing. One whose final event
// is out, or was on its way when the replica that published it stopped
// before storing the end (Final), ends instead, that event published
// again under its message id: the look was only to send it with the
// action as it is now. Looked at again while the looks said nothing
// (the credentials refused, the API failing), it was published again at
// maxAge, past the results stream's duplicate window, and stored twice.
func (tr *tracker) reschedule(ctx context.Context, st *tracked, now time.Time) error {
	if st.Final != "" {
		return tr.end(ctx, st)
	}
	st.Next = tr.nextLook(st, now)
	if err := tr.save(ctx, st); err != nil {
		return tr.settle(st, err)
	}
	tr.push(st)
	return nil
}

func (a tenantActions) budget() float64 {
	return trackBudget(a.t.limits.API(mde.APIMachineActions).Windows())
}
