package worker

import (
	"context"
	"maps"
	"slices"
	"sync"

	"github.com/contoso-secops/mde-offboard/offboard"
)

// Control is the operators' control plane as the worker reads it
// (control.Watcher).
type Control interface {
	// Paused says whether the tenant's priority is paused: no new
	// request of it is taken.
	Paused(tenant string, p offboard.Priority) bool
	// Budget returns the tenant's budget override ("<count>/<duration>");
	// ok is false when the tenants file's budget applies.
	Budget(tenant string) (override string, ok bool)
	// Changed is closed at the next change of any control.
	Changed() <-chan struct{}
}

// freshness is what a control plane may also tell (control.Watcher):
// whether the controls it knows are those in force, or may miss a change
// written while the connection to NATS was away; Changed is closed once
// they are read anew.
type freshness interface {
	Fresh() bool
}

// controlsFresh says whether the controls known are those in force, the
// campaigns' cancels among them: no new offboard call starts on controls
// that may be out of date.
func (w *Worker) controlsFresh() bool {
	if f, ok := w.opts.Control.(freshness); ok && !f.Fresh() {
		return false
	}
	return w.campaigns == nil || w.campaigns.Fresh()
}

// marksRead is closed once the campaigns' marks are read anew (nil: no
// campaign watcher, never).
func (w *Worker) marksRead() <-chan struct{} {
	if w.campaigns == nil {
		return nil
	}
	return w.campaigns.Read()
}

// noControl is the control plane of a worker that has none: nothing is
// ever paused.
type noControl struct{}

func (noControl) Paused(string, offboard.Priority) bool { return false }
func (noControl) Changed() <-chan struct{}              { return nil }
func (noControl) Budget(string) (string, bool)          { return "", false }

// served returns the tenant's priorities not paused, waiting while every
// one is, and while the controls or the campaigns' cancels may be out of
// date (controlsFresh);
// changed is closed at the next change after the answer was read. Once
// landed is closed (a cancel of one of the tenant's campaigns landed), it
// returns with the controls fresh even when every priority is paused
// (prios empty): the cancel withdraws the campaign's requests from the
// stream, paused or not (nextRequests). nil: never.
func (w *Worker) served(ctx context.Context, tenant string, landed <-chan struct{}) (prios []offboard.Priority, changed <-chan struct{}, err error) {
	for {
		changed = w.opts.Control.Changed()
		read := w.marksRead()
		prios = w.unpaused(tenant)
		if w.controlsFresh() && (len(prios) > 0 || isClosed(landed)) {
			return prios, changed, nil
		}
		select {
		case <-changed:
		case <-read:
		case <-landed:
		case <-ctx.Done():
			return nil, nil, ctx.Err()
		}
	}
}

// isClosed says whether c is closed (nil: never).
func isClosed(c <-chan struct{}) bool {
	select {
	case <-c:
		return true
	default:
		return false
	}
}

func (w *Worker) unpaused(tenant string) []offboard.Priority {
	prios := make([]offboard.Priority, 0, 2)
	for _, p := range []offboard.Priority{offboard.Normal, offboard.Bulk} {
		if !w.opts.Control.Paused(tenant, p) {
			prios = append(prios, p)
		}
	}
	return prios
}

// untilPaused returns a context that ends with ctx, or when a pause
// changes which of the tenant's priorities are served (prios); changed is
// the controls' change signal as it was when prios were read. stop ends
// its watch. The watches of all tenants share one goroutine (runPauses):
// every idle tenant waits in one of them.
func (w *Worker) untilPaused(ctx context.Context, tenant string, prios []offboard.Priority, changed <-chan struct{}) (context.Context, func()) {
	cctx, cancel := context.WithCancel(ctx)
	pw := &pauseWatch{tenant: tenant, prios: prios, cancel: cancel}
	w.pauses.add(pw)
	// A change since prios were read may have been looked at by
	// runPauses before the watch was added: look here.
	select {
	case <-changed:
		w.checkPauses(pw)
	default:
	}
	return cctx, func() {
		w.pauses.remove(pw)
		cancel()
	}
}

// pauseWatch is one wait of untilPaused.
type pauseWatch struct {
	tenant string
	prios  []offboard.Priority
	cancel context.CancelFunc
}

// pauseWatches are the waits untilPaused watches.
type pauseWatches struct {
	mu      sync.Mutex
	watches map[*pauseWatch]struct{}
}

func (p *pauseWatches) add(pw *pauseWatch) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.watches == nil {
		p.watches = map[*pauseWatch]struct{}{}
	}
	p.watches[pw] = struct{}{}
}

func (p *pauseWatches) remove(pw *pauseWatch) {
	p.mu.Lock()
	defer p.mu.Unlock()
	delete(p.watches, pw)
}

func (p *pauseWatches) all() []*pauseWatch {
	p.mu.Lock()
	defer p.mu.Unlock()
	return slices.Collect(maps.Keys(p.watches))
}

// runPauses ends the waits whose served priorities a change of the
// controls changed, until ctx ends. It reads the next change signal before
// it looks, so that a change while it looks is looked at again.
func (w *Worker) runPauses(ctx context.Context) {
	for {
		changed := w.opts.Control.Changed()
		w.checkPauses(w.pauses.all()...)
		select {
		case <-ctx.Done():
			return
		case <-changed:
		}
	}
}

// checkPauses ends the waits whose tenant's served priorities are no
// longer those they wait for.
func (w *Worker) checkPauses(pws ...*pauseWatch) {
	for _, pw := range pws {
		if !slices.Equal(w.unpaused(pw.tenant), pw.prios) {
			pw.cancel()
		}
	}
}

// setPaused sets the tenant's paused and held-by-pause gauges from the
// controls and the counts last read. A pause holds every request of a
// paused priority not answered: those waiting, and those delivered, which
// it hands back to the stream as they come to their call (a call under
// way when it landed finishes), as offboardctl status counts them.
func (w *Worker) setPaused(t *tenantRun) {
	held := 0.0
	for _, p := range []offboard.Priority{offboard.Normal, offboard.Bulk} {
		v := 0.0
		if w.opts.Control.Paused(t.name, p) {
			v = 1
			held += float64(t.backlog[p] + t.unacked[p])
		}
		w.m.TenantPaused.WithLabelValues(t.name, string(p)).Set(v)
	}
	w.m.HeldRequests.WithLabelValues(t.name, HeldPause).Set(held)
}
