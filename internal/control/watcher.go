package control

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/zap"

	"github.com/contoso-secops/mde-offboard/offboard"
)

// Watcher follows the control bucket: every worker replica runs one. A
// change an operator writes reaches it through a key-value watch, within
// milliseconds on a healthy server.
type Watcher struct {
	kv  jetstream.KeyValue
	log *zap.Logger

	mu      sync.Mutex
	view    View
	changed chan struct{} // closed and replaced on every change
	current chan struct{} // closed once every entry that existed at start is read
}

// NewWatcher opens the control bucket, which must exist (queue.Ensure).
func NewWatcher(ctx context.Context, js jetstream.JetStream, log *zap.Logger) (*Watcher, error) {
	kv, err := js.KeyValue(ctx, offboard.BucketControl)
	if err != nil {
		return nil, fmt.Errorf("bucket %s: %w", offboard.BucketControl, err)
	}
	return &Watcher{kv: kv, log: log.Named("control"), changed: make(chan struct{}), current: make(chan struct{})}, nil
}

// rewatchAfter is how long Run waits before watching again when a watch
// ended (the server went away for longer than the watch survives).
const rewatchAfter = time.Second

// Run follows the bucket until ctx ends. When the watch ends it watches
// again; the entries are read again and overwrite what was known.
func (w *Watcher) Run(ctx context.Context) error {
	for ctx.Err() == nil {
		if err := w.watch(ctx); ctx.Err() == nil {
			w.log.Warn("control watch ended; watching again", zap.Error(err))
			t := time.NewTimer(rewatchAfter) // real time: waits for the server, not logic
			select {
			case <-ctx.Done():
			case <-t.C:
			}
			t.Stop()
		}
	}
	return nil
}

func (w *Watcher) watch(ctx context.Context) error {
	kw, err := w.kv.WatchAll(ctx)
	if err != nil {
		return fmt.Errorf("watch %s: %w", offboard.BucketControl, err)
	}
	defer func() { _ = kw.Stop() }()
	live := false // past the entries that existed when this watch began
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case e, ok := <-kw.Updates():
			if !ok {
				return fmt.Errorf("watch %s closed", offboard.BucketControl)
			}
			if e == nil {
				live = true
				w.markCurrent()
				continue
			}
			w.apply(e, live)
		}
	}
}

func (w *Watcher) markCurrent() {
	w.mu.Lock()
	defer w.mu.Unlock()
	select {
	case <-w.current:
	default:
		close(w.current)
	}
}

// apply records an entry, logs it and signals the change.
func (w *Watcher) apply(e jetstream.KeyValueEntry, live bool) {
	w.mu.Lock()
	c, err := w.view.apply(e)
	if err == nil {
		close(w.changed)
		w.changed = make(chan struct{})
	}
	w.mu.Unlock()
	if err != nil {
		w.log.Warn("control entry ignored", zap.String("key", e.Key()), zap.Error(err))
		return
	}
	fields := []zap.Field{
		zap.String("tenant", c.tenant), zap.String("control", c.kind),
		zap.String("by", c.entry.By), zap.String("reason", c.entry.Reason), zap.Time("at", c.entry.At),
	}
	if c.kind == "pause" {
		fields = append(fields, zap.String("priority", string(c.priority)), zap.Bool("paused", c.entry.Paused))
	} else {
		fields = append(fields, zap.String("budget", c.entry.Value))
	}
	switch {
	case live:
		w.log.Info("control changed", fields...)
	case c.inForce():
		w.log.Info("control in force", fields...)
	}
}

// Current is closed once the watcher knows every control that existed
// when it started.
func (w *Watcher) Current() <-chan struct{} { return w.current }

// Changed is closed at the next change of any control. Take it before
// reading the state it guards, so no change falls in between.
func (w *Watcher) Changed() <-chan struct{} {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.changed
}

// Paused says whether the tenant's priority is paused.
func (w *Watcher) Paused(tenant string, p offboard.Priority) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.view.Paused(tenant, p)
}

// Budget returns the tenant's budget override ("<count>/<duration>"); ok
// is false when none is set and the tenants file's budget applies.
func (w *Watcher) Budget(tenant string) (override string, ok bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	e, ok := w.view.Budget(tenant)
	return e.Value, ok
}
