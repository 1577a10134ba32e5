package worker

import (
	"context"
	"slices"

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

// noControl is the control plane of a worker that has none: nothing is
// ever paused.
type noControl struct{}

func (noControl) Paused(string, offboard.Priority) bool { return false }
func (noControl) Changed() <-chan struct{}              { return nil }
func (noControl) Budget(string) (string, bool)          { return "", false }

// served returns the tenant's priorities not paused, waiting while every
// one is; changed is closed at the next change after the answer was read.
func (w *Worker) served(ctx context.Context, tenant string) (prios []offboard.Priority, changed <-chan struct{}, err error) {
	for {
		changed = w.opts.Control.Changed()
		if prios = w.unpaused(tenant); len(prios) > 0 {
			return prios, changed, nil
		}
		select {
		case <-changed:
		case <-ctx.Done():
			return nil, nil, ctx.Err()
		}
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
// changes which of the tenant's priorities are served (prios); stop ends
// its watch and waits for it.
func (w *Worker) untilPaused(ctx context.Context, tenant string, prios []offboard.Priority, changed <-chan struct{}) (context.Context, func()) {
	cctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			select {
			case <-cctx.Done():
				return
			case <-changed:
				changed = w.opts.Control.Changed()
				if !slices.Equal(w.unpaused(tenant), prios) {
					cancel()
					return
				}
			}
		}
	}()
	return cctx, func() { cancel(); <-done }
}

// setPaused sets the tenant's paused and held-by-pause gauges from the
// controls and the backlog last read.
func (w *Worker) setPaused(tenant string, backlog map[offboard.Priority]uint64) {
	held := 0.0
	for _, p := range []offboard.Priority{offboard.Normal, offboard.Bulk} {
		v := 0.0
		if w.opts.Control.Paused(tenant, p) {
			v = 1
			held += float64(backlog[p])
		}
		w.m.TenantPaused.WithLabelValues(tenant, string(p)).Set(v)
	}
	w.m.HeldRequests.WithLabelValues(tenant, HeldPause).Set(held)
}
