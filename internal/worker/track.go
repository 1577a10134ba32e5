package worker

import (
	"container/heap"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/zap"

	"github.com/contoso-secops/mde-offboard/internal/mde"
	"github.com/contoso-secops/mde-offboard/internal/queue"
	"github.com/contoso-secops/mde-offboard/offboard"
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
	mu    sync.Mutex
	queue trackQueue
	ids   map[string]bool // actions being followed
	wake  chan struct{}
}

func newTracker() *tracker { return &tracker{wake: make(chan struct{}, 1), ids: map[string]bool{}} }

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
func (w *Worker) track(ctx context.Context, t *tenantRun, res *offboard.Result) error {
	a, err := mde.ParseAction(res.MachineAction)
	if err != nil || !a.Unfinished() || t.tracker.following(a.ID) {
		return nil //nolint:nilerr // nothing (new) to follow
	}
	now := w.clock.Now().UTC()
	cfg := t.Config.Tracking
	st := &tracked{
		RequestID: res.RequestID, MachineID: res.MachineID, ActionID: a.ID, Status: a.Status,
		Since: now, Next: now.Add(time.Duration(cfg.FirstCheck)), Interval: time.Duration(cfg.FirstCheck),
	}
	if err := w.saveTracked(ctx, t, st); err != nil {
		return err
	}
	if err := w.publishAction(ctx, t, st, "", a.Raw, false); err != nil {
		return err
	}
	t.tracker.add(st)
	return nil
}

func (w *Worker) saveTracked(ctx context.Context, t *tenantRun, st *tracked) error {
	data, err := json.Marshal(st)
	if err != nil {
		return err
	}
	return w.opts.Ledger.Track(ctx, t.name, st.ActionID, data)
}

func (w *Worker) publishAction(ctx context.Context, t *tenantRun, st *tracked, previous string, raw json.RawMessage, final bool) error {
	ev := ActionEvent{
		Tenant: t.name, RequestID: st.RequestID, MachineID: st.MachineID, ActionID: st.ActionID,
		Status: st.Status, PreviousStatus: previous, MachineAction: raw, ObservedAt: w.clock.Now().UTC(), Final: final,
	}
	data, err := json.Marshal(ev)
	if err != nil {
		return err
	}
	m := nats.NewMsg(w.opts.Settings.Subjects.Action(t.name))
	m.Data = data
	id := "action:" + t.name + ":" + st.ActionID + ":" + st.Status
	if final && previous == st.Status {
		id += ":ended" // tracking gave up on an action still unfinished
	}
	m.Header.Set(jetstream.MsgIDHeader, id)
	m.Header.Set("Content-Type", "application/json")
	_, err = w.opts.JS.PublishMsg(ctx, m)
	return err
}

// trackReload is how often a tracker reads the ledger for actions it does
// not follow yet: those another replica started following before it died.
const trackReload = 5 * time.Minute

// runTracker polls the tenant's tracked actions as they come due.
func (w *Worker) runTracker(ctx context.Context, t *tenantRun) {
	log := t.log.Named("tracker")
	var loaded time.Time
	for {
		if w.clock.Since(loaded) >= trackReload {
			loaded = w.clock.Now()
			w.loadTracked(ctx, t, log)
		}
		t.tracker.mu.Lock()
		var due *tracked
		wait := trackReload - w.clock.Since(loaded)
		if len(t.tracker.queue) > 0 {
			if d := t.tracker.queue[0].Next.Sub(w.clock.Now()); d <= 0 {
				due = heap.Pop(&t.tracker.queue).(*tracked)
			} else {
				wait = min(wait, d)
			}
		}
		t.tracker.mu.Unlock()
		if due == nil {
			timer := w.clock.NewTimer(wait)
			select {
			case <-ctx.Done():
				timer.Stop()
				return
			case <-t.tracker.wake:
			case <-timer.Chan():
			}
			timer.Stop()
			continue
		}
		if err := w.poll(ctx, t, due); err != nil {
			if ctx.Err() != nil {
				return
			}
			log.Warn("poll action", zap.String("action_id", due.ActionID), zap.Error(err))
			due.Next = w.clock.Now().Add(due.Interval)
			t.tracker.push(due)
		}
	}
}

// loadTracked follows the tenant's actions in the ledger that this tracker
// does not follow yet.
func (w *Worker) loadTracked(ctx context.Context, t *tenantRun, log *zap.Logger) {
	states, err := w.opts.Ledger.Tracked(ctx, t.name)
	if err != nil && ctx.Err() == nil {
		log.Warn("load tracked actions", zap.Error(err))
	}
	for _, data := range states {
		var st tracked
		if json.Unmarshal(data, &st) == nil && st.ActionID != "" {
			t.tracker.add(&st)
		}
	}
}

// claim makes this replica the one to look at the action now. Every
// replica may follow the same actions (each loads them all from the
// ledger); the ledger says when the next look is due, and a replica moves
// it on (compare-and-swap) before looking, so each look is made once.
// false: not this replica's look, or the tracking has ended.
func (w *Worker) claim(ctx context.Context, t *tenantRun, st *tracked) (bool, error) {
	data, rev, err := w.opts.Ledger.TrackedState(ctx, t.name, st.ActionID)
	if err != nil {
		return false, err
	}
	if data == nil { // another replica ended the tracking
		t.tracker.done(st.ActionID)
		return false, nil
	}
	var cur tracked
	if err := json.Unmarshal(data, &cur); err != nil {
		return false, fmt.Errorf("tracked state of %s: %w", st.ActionID, err)
	}
	now := w.clock.Now()
	if cur.Next.After(now) { // another replica looked, or is looking
		*st = cur
		t.tracker.push(st)
		return false, nil
	}
	cur.Next = now.Add(cur.Interval)
	if data, err = json.Marshal(cur); err != nil {
		return false, err
	}
	if err := w.opts.Ledger.TrackOver(ctx, t.name, st.ActionID, data, rev); err != nil {
		if errors.Is(err, queue.ErrConflict) { // another replica claimed it first
			st.Next = now
			t.tracker.push(st)
			return false, nil
		}
		return false, err
	}
	*st = cur
	return true, nil
}

// poll reads one action, publishes a status change, and schedules the next
// look or ends the tracking.
func (w *Worker) poll(ctx context.Context, t *tenantRun, st *tracked) error {
	// The permit first, then the claim: a claim held while waiting for
	// quota could run out, and another replica look at the same time.
	permit, err := t.limits.API(mde.APIMachineActions).AcquireLow(ctx)
	if err != nil {
		return err
	}
	if mine, err := w.claim(ctx, t, st); err != nil || !mine {
		permit.Release()
		return err
	}
	if w.clock.Since(st.Since) >= time.Duration(t.Config.Tracking.MaxAge) {
		permit.Release()
		return w.endTracking(ctx, t, st) // too old, whatever the API answers lately
	}
	a, err := w.send(ctx, t, mde.APIMachineActions, permit, func(ctx context.Context) (*mde.Answer, error) {
		return t.Client.GetAction(ctx, st.ActionID)
	})
	if err != nil {
		return err
	}
	now := w.clock.Now().UTC()
	cfg := t.Config.Tracking
	switch {
	case a.Class == mde.Throttled:
		w.m.Throttled.WithLabelValues(t.name, mde.APIMachineActions).Inc()
		t.limits.Pause(now, a.RetryAfter)
		return w.reschedule(ctx, t, st, now)
	case a.Status == http.StatusUnauthorized || a.Status == http.StatusForbidden:
		// Credentials or permission trouble says nothing about the action:
		// keep following it (maxAge still bounds that).
		if a.Status == http.StatusUnauthorized && t.Cred != nil {
			if err := t.Cred.Invalidate(); err != nil {
				t.log.Warn("get a new token", zap.Error(err))
			}
		}
		return w.reschedule(ctx, t, st, now)
	case a.Status == http.StatusNotFound && st.Misses < 3:
		// A fresh action can read 404 for a moment: look again before
		// giving up.
		st.Misses++
		return w.reschedule(ctx, t, st, now)
	case a.Class == mde.NotFound, a.Class == mde.Final:
		// The action is gone or unreadable: a last event says tracking ends.
		t.log.Warn("tracked action unreadable: tracking stops", zap.String("action_id", st.ActionID), zap.String("answer", a.Error()))
		return w.endTracking(ctx, t, st)
	case a.Class != mde.Success:
		return w.reschedule(ctx, t, st, now)
	}
	action, err := mde.ParseAction(a.Body)
	if err != nil {
		return err
	}
	st.Misses = 0
	expired := now.Sub(st.Since) >= time.Duration(cfg.MaxAge)
	final := !action.Unfinished() || expired
	if action.Status != st.Status || final {
		previous := st.Status
		st.Status = action.Status
		if err := w.publishAction(ctx, t, st, previous, action.Raw, final); err != nil {
			st.Status = previous
			return err
		}
	}
	if final {
		t.tracker.done(st.ActionID)
		return w.opts.Ledger.Untrack(ctx, t.name, st.ActionID)
	}
	st.Interval = min(2*st.Interval, time.Duration(cfg.MaxInterval))
	return w.reschedule(ctx, t, st, now)
}

// endTracking gives up on an unfinished action: a last event, marked final,
// says so.
func (w *Worker) endTracking(ctx context.Context, t *tenantRun, st *tracked) error {
	if err := w.publishAction(ctx, t, st, st.Status, nil, true); err != nil {
		return err
	}
	t.tracker.done(st.ActionID)
	return w.opts.Ledger.Untrack(ctx, t.name, st.ActionID)
}

// reschedule saves a followed action's state and plans its next look.
func (w *Worker) reschedule(ctx context.Context, t *tenantRun, st *tracked, now time.Time) error {
	st.Next = now.Add(st.Interval)
	if err := w.saveTracked(ctx, t, st); err != nil {
		return err
	}
	t.tracker.push(st)
	return nil
}
