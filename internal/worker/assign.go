package worker

import (
	"context"
	"sync"

	"go.uber.org/zap"
)

// Assignment spreads the tenants across the replicas (queue.Presence): a
// replica runs the loop of a tenant only while the tenant is assigned to
// it. The unrouted and stale consumers do not depend on it.
type Assignment interface {
	// Assigned says whether this replica should take the tenant's
	// requests now.
	Assigned(tenant string) bool
	// Changed is closed when Assigned may answer differently.
	Changed() <-chan struct{}
}

// disputes is what an Assignment may also tell (queue.Presence): why no
// replica works a tenant now, the replicas' tenants files disagreeing
// on it ("": they do not).
type disputes interface {
	Disputed(tenant string) string
}

// disputed is why no replica works the tenant now ("": none is known).
func (w *Worker) disputed(tenant string) string {
	if d, ok := w.opts.Assignment.(disputes); ok {
		return d.Disputed(tenant)
	}
	return ""
}

// everyTenant assigns every tenant to this replica: a worker told nothing
// of other replicas.
type everyTenant struct{}

func (everyTenant) Assigned(string) bool     { return true }
func (everyTenant) Changed() <-chan struct{} { return nil }

// gate holds a tenant's loop while the tenant is not assigned to this
// replica. While it is, wait hands out a context that ends when the
// assignment does, so an idle loop lets go of its pull at once.
type gate struct {
	mu     sync.Mutex
	ctx    context.Context // nil while not assigned
	cancel context.CancelFunc
	open   chan struct{} // closed while assigned
}

func newGate() *gate { return &gate{open: make(chan struct{})} }

// set opens the gate under parent, or closes it.
func (g *gate) set(parent context.Context, assigned bool) (changed bool) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if assigned == (g.ctx != nil) {
		return false
	}
	if assigned {
		g.ctx, g.cancel = context.WithCancel(parent)
		close(g.open)
		return true
	}
	g.cancel()
	g.ctx, g.cancel = nil, nil
	g.open = make(chan struct{})
	return true
}

// wait returns the context of the current assignment, waiting for one if
// needed; it fails only when ctx ends.
func (g *gate) wait(ctx context.Context) (context.Context, error) {
	for {
		g.mu.Lock()
		actx, open := g.ctx, g.open
		g.mu.Unlock()
		if actx != nil && actx.Err() == nil {
			return actx, nil
		}
		select {
		case <-open:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

// runAssignment opens and closes the tenants' gates as the assignment
// changes, until ctx ends.
func (w *Worker) runAssignment(ctx context.Context) {
	for {
		changed := w.opts.Assignment.Changed()
		for _, t := range w.tenants {
			assigned := w.opts.Assignment.Assigned(t.name)
			if t.gate.set(ctx, assigned) {
				w.m.Assigned.WithLabelValues(t.name).Set(boolGauge(assigned))
				// The worker's logger, not the tenant's: that one encodes
				// its tenant field on its first line, which an idle tenant
				// may never log.
				w.log.Info("tenant assignment", zap.String("tenant", t.name), zap.Bool("assigned", assigned))
			}
		}
		select {
		case <-ctx.Done():
			for _, t := range w.tenants {
				t.gate.set(ctx, false)
			}
			return
		case <-changed:
		}
	}
}

func boolGauge(b bool) float64 {
	if b {
		return 1
	}
	return 0
}
