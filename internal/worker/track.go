package worker

import (
	"container/heap"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
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
type tracker struct {
	trackerConfig

	mu    sync.Mutex
	queue trackQueue
	ids   map[string]bool // actions being followed
	wake  chan struct{}
}

// trackStore keeps followed actions' states (queue.Ledger).
type trackStore interface {
	Track(ctx context.Context, tenant, actionID string, state []byte) error
	TrackedState(ctx context.Context, tenant, actionID string) ([]byte, uint64, error)
	TrackOver(ctx context.Context, tenant, actionID string, state []byte, rev uint64) error
	Untrack(ctx context.Context, tenant, actionID string) error
	Tracked(ctx context.Context, tenant string) ([][]byte, error)
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
	throttled(v *mde.Verdict)
	// refreshToken drops the cached token after a 401.
	refreshToken()
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
}

func newTracker(c trackerConfig) *tracker {
	return &tracker{trackerConfig: c, wake: make(chan struct{}, 1), ids: map[string]bool{}}
}

// add starts following an action; false if it is followed already.
func (tr *tracker) add(a *tracked) bool {
	tr.mu.Lock()
	if tr.ids[a.ActionID] {
		tr.mu.Unlock()
		return false
	}
	tr.ids[a.ActionID] = true
	tr.mu.Unlock()
	tr.push(a)
	return true
}

// done stops following an action.
func (tr *tracker) done(actionID string) {
	tr.mu.Lock()
	delete(tr.ids, actionID)
	tr.mu.Unlock()
}

func (tr *tracker) following(actionID string) bool {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	return tr.ids[actionID]
}

// push schedules a followed action's next look.
func (tr *tracker) push(a *tracked) {
	tr.mu.Lock()
	heap.Push(&tr.queue, a)
	tr.mu.Unlock()
	select {
	case tr.wake <- struct{}{}:
	default:
	}
}

// track starts following an action that a result carries.
func (tr *tracker) track(ctx context.Context, res *offboard.Result) error {
	a, err := mde.ParseAction(res.MachineAction)
	if err != nil || !a.Unfinished() || tr.following(a.ID) {
		return nil //nolint:nilerr // nothing (new) to follow
	}
	now := tr.clock.Now().UTC()
	cfg := tr.cfg
	st := &tracked{
		RequestID: res.RequestID, MachineID: res.MachineID, ActionID: a.ID, Status: a.Status,
		Since: now, Next: now.Add(time.Duration(cfg.FirstCheck)), Interval: time.Duration(cfg.FirstCheck),
	}
	if err := tr.save(ctx, st); err != nil {
		return err
	}
	if err := tr.publishAction(ctx, st, "", a.Raw, false); err != nil {
		return err
	}
	tr.add(st)
	return nil
}

func (tr *tracker) save(ctx context.Context, st *tracked) error {
	data, err := json.Marshal(st)
	if err != nil {
		return err
	}
	return tr.store.Track(ctx, tr.tenant, st.ActionID, data)
}

func (tr *tracker) publishAction(ctx context.Context, st *tracked, previous string, raw json.RawMessage, final bool) error {
	ev := ActionEvent{
		Tenant: tr.tenant, RequestID: st.RequestID, MachineID: st.MachineID, ActionID: st.ActionID,
		Status: st.Status, PreviousStatus: previous, MachineAction: raw, ObservedAt: tr.clock.Now().UTC(), Final: final,
	}
	data, err := json.Marshal(ev)
	if err != nil {
		return err
	}
	id := offboard.ActionMsgID(tr.tenant, st.ActionID, st.Status)
	if final && previous == st.Status {
		id += ":ended" // tracking gave up on an action still unfinished
	}
	return tr.publish(ctx, tr.subjects.Action(tr.tenant), id, data)
}

// trackReload is how often a tracker reads the ledger for actions it does
// not follow yet: those another replica started following before it died.
const trackReload = 5 * time.Minute

// run polls the tenant's tracked actions as they come due.
func (tr *tracker) run(ctx context.Context) {
	var loaded time.Time
	for {
		if tr.clock.Since(loaded) >= trackReload {
			loaded = tr.clock.Now()
			tr.load(ctx)
		}
		tr.mu.Lock()
		var due *tracked
		wait := trackReload - tr.clock.Since(loaded)
		if len(tr.queue) > 0 {
			if d := tr.queue[0].Next.Sub(tr.clock.Now()); d <= 0 {
				due = heap.Pop(&tr.queue).(*tracked)
			} else {
				wait = min(wait, d)
			}
		}
		tr.mu.Unlock()
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
			due.Next = tr.clock.Now().Add(due.Interval)
			tr.push(due)
		}
	}
}

// load follows the tenant's actions in the ledger that this tracker
// does not follow yet.
func (tr *tracker) load(ctx context.Context) {
	states, err := tr.store.Tracked(ctx, tr.tenant)
	if err != nil && ctx.Err() == nil {
		tr.log.Warn("load tracked actions", zap.Error(err))
	}
	for _, data := range states {
		var st tracked
		if json.Unmarshal(data, &st) == nil && st.ActionID != "" {
			tr.add(&st)
		}
	}
}

// claim makes this replica the one to look at the action now. Every
// replica may follow the same actions (each loads them all from the
// ledger); the ledger says when the next look is due, and a replica moves
// it on (compare-and-swap) before looking, so each look is made once.
// false: not this replica's look, or the tracking has ended.
func (tr *tracker) claim(ctx context.Context, st *tracked) (bool, error) {
	data, rev, err := tr.store.TrackedState(ctx, tr.tenant, st.ActionID)
	if err != nil {
		return false, err
	}
	if data == nil { // another replica ended the tracking
		tr.done(st.ActionID)
		return false, nil
	}
	var cur tracked
	if err := json.Unmarshal(data, &cur); err != nil {
		return false, fmt.Errorf("tracked state of %s: %w", st.ActionID, err)
	}
	now := tr.clock.Now()
	if cur.Next.After(now) { // another replica looked, or is looking
		*st = cur
		tr.push(st)
		return false, nil
	}
	cur.Next = now.Add(cur.Interval)
	if data, err = json.Marshal(cur); err != nil {
		return false, err
	}
	if err := tr.store.TrackOver(ctx, tr.tenant, st.ActionID, data, rev); err != nil {
		if errors.Is(err, queue.ErrConflict) { // another replica claimed it first
			st.Next = now
			tr.push(st)
			return false, nil
		}
		return false, err
	}
	*st = cur
	return true, nil
}

// poll reads one action, publishes a status change, and schedules the next
// look or ends the tracking.
func (tr *tracker) poll(ctx context.Context, st *tracked) error {
	// The permit first, then the claim: a claim held while waiting for
	// quota could run out, and another replica look at the same time.
	permit, err := tr.actions.permit(ctx)
	if err != nil {
		return err
	}
	if mine, err := tr.claim(ctx, st); err != nil || !mine {
		permit.Release()
		return err
	}
	if tr.clock.Since(st.Since) >= time.Duration(tr.cfg.MaxAge) {
		permit.Release()
		return tr.end(ctx, st) // too old, whatever the API answers lately
	}
	v, err := tr.actions.get(ctx, permit, st.ActionID)
	if err != nil {
		return err
	}
	now := tr.clock.Now().UTC()
	switch {
	case v.Class == mde.Throttled:
		tr.actions.throttled(v)
		return tr.reschedule(ctx, st, now)
	case v.Reason == mde.ReasonUnauthorized || v.Reason == mde.ReasonForbidden:
		// Credentials or permission trouble says nothing about the action:
		// keep following it (maxAge still bounds that).
		if v.RefreshToken {
			tr.actions.refreshToken()
		}
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
	return tr.observe(ctx, st, v, now)
}

// observe publishes what a successful look saw, and ends the tracking or
// plans the next look.
func (tr *tracker) observe(ctx context.Context, st *tracked, v *mde.Verdict, now time.Time) error {
	action, err := mde.ParseAction(v.Body)
	if err != nil {
		return err
	}
	st.Misses = 0
	expired := now.Sub(st.Since) >= time.Duration(tr.cfg.MaxAge)
	final := !action.Unfinished() || expired
	if action.Status != st.Status || final {
		previous := st.Status
		st.Status = action.Status
		if err := tr.publishAction(ctx, st, previous, action.Raw, final); err != nil {
			st.Status = previous
			return err
		}
	}
	if final {
		tr.done(st.ActionID)
		return tr.store.Untrack(ctx, tr.tenant, st.ActionID)
	}
	st.Interval = min(2*st.Interval, time.Duration(tr.cfg.MaxInterval))
	return tr.reschedule(ctx, st, now)
}

// end gives up on an unfinished action: a last event, marked final,
// says so.
func (tr *tracker) end(ctx context.Context, st *tracked) error {
	if err := tr.publishAction(ctx, st, st.Status, nil, true); err != nil {
		return err
	}
	tr.done(st.ActionID)
	return tr.store.Untrack(ctx, tr.tenant, st.ActionID)
}

// reschedule saves a followed action's state and plans its next look.
func (tr *tracker) reschedule(ctx context.Context, st *tracked, now time.Time) error {
	st.Next = now.Add(st.Interval)
	if err := tr.save(ctx, st); err != nil {
		return err
	}
	tr.push(st)
	return nil
}
