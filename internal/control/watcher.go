package control

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/zap"

	"github.com/contoso-secops/mde-offboard/internal/limiter"
	"github.com/contoso-secops/mde-offboard/internal/queue"
	"github.com/contoso-secops/mde-offboard/offboard"
)

// Watcher follows the control bucket: every worker replica runs one. A
// change an operator writes reaches it through a key-value watch, within
// milliseconds on a healthy server.
type Watcher struct {
	kv     jetstream.KeyValue
	stream jetstream.Stream // the bucket's, to look for entries the watch did not bring
	nc     *nats.Conn
	log    *zap.Logger

	mu      sync.Mutex
	view    View
	changed chan struct{} // closed and replaced on every change
	current chan struct{} // closed once every entry that existed at start is read
	// read marks the connection as the watch whose entries make the view
	// began: a reconnection since, and the view may miss a change.
	read queue.ConnMark
	// kick has the watch look at once whether its connection was made
	// again (Fresh), rather than at its next check.
	kick chan struct{}
	// seen is the highest revision the watch brought; missing a pause or
	// budget entry the bucket holds that the watch had not brought when a
	// check found it (0: none). See stalled.
	seen, missing uint64
}

// NewWatcher opens the control bucket, which must exist (queue.Ensure).
func NewWatcher(ctx context.Context, js jetstream.JetStream, log *zap.Logger) (*Watcher, error) {
	kv, err := js.KeyValue(ctx, offboard.BucketControl)
	if err != nil {
		return nil, fmt.Errorf("bucket %s: %w", offboard.BucketControl, err)
	}
	stream, err := js.Stream(ctx, "KV_"+offboard.BucketControl)
	if err != nil {
		return nil, fmt.Errorf("bucket %s: %w", offboard.BucketControl, err)
	}
	return &Watcher{kv: kv, stream: stream, nc: js.Conn(), log: log.Named("control"), changed: make(chan struct{}), current: make(chan struct{}),
		kick: make(chan struct{}, 1)}, nil
}

// rewatchAfter is how long Run waits before watching again when a watch
// ended (the server went away for longer than the watch survives).
const rewatchAfter = time.Second

// errBucketReset ends a watch whose bucket was made again or purged.
var errBucketReset = errors.New("the control bucket was made again or purged")

// errWatchStalled ends a watch that did not bring an entry the bucket
// holds (stalled).
var errWatchStalled = errors.New("the control watch did not bring an entry the bucket holds")

// Run follows the bucket until ctx ends. When the watch ends it watches
// again; the entries are read again and replace what was known.
func (w *Watcher) Run(ctx context.Context) error {
	for ctx.Err() == nil {
		if err := w.watch(ctx); ctx.Err() == nil {
			w.ended(ctx, err)
		}
	}
	return nil
}

// ended logs why a watch ended and waits before the next, unless the
// bucket is to be read anew at once.
func (w *Watcher) ended(ctx context.Context, err error) {
	if errors.Is(err, errBucketReset) {
		// A bucket made again numbers its entries anew.
		w.mu.Lock()
		w.seen, w.missing = 0, 0
		w.mu.Unlock()
		w.log.Warn("control bucket made again, purged, or an entry gone without a delete: reading it anew")
		return
	}
	if errors.Is(err, queue.ErrReconnected) {
		w.log.Info("NATS connection made again: reading the controls anew")
		return
	}
	if errors.Is(err, errWatchStalled) {
		w.log.Warn("control watch brought nothing for a second while the bucket holds a new entry (the NATS server serving the watch lost?): reading the controls anew")
		return
	}
	w.log.Warn("control watch ended; watching again", zap.Error(err))
	t := time.NewTimer(rewatchAfter) // real time: waits for the server, not logic
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}

// controlKeys are the keys the watcher reads: the campaigns' marks share
// the bucket (package campaign). A new slice each time: WatchFiltered
// writes the bucket's prefix into the one it is given.
func controlKeys() []string { return []string{"pause.>", "budget.>"} }

func (w *Watcher) watch(ctx context.Context) error {
	conn := queue.MarkConn(w.nc)
	created, err := queue.BucketCreated(ctx, w.kv)
	if err != nil {
		return fmt.Errorf("bucket %s: %w", offboard.BucketControl, err)
	}
	kw, err := w.kv.WatchFiltered(ctx, controlKeys())
	if err != nil {
		return fmt.Errorf("watch %s: %w", offboard.BucketControl, err)
	}
	defer func() { _ = kw.Stop() }()
	// The entries that exist now make a new view, which replaces the old
	// one once all are read: a control that is gone from the bucket is
	// gone from the view. Until then the old one stays in force.
	var fresh *View
	var freshSeen uint64 // the highest revision the read anew brought
	if w.started() {
		fresh = &View{}
	}
	check := time.NewTicker(queue.BucketCheck) // real time: paces requests to the server
	defer check.Stop()
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-check.C:
			if w.reset(ctx, created) {
				return errBucketReset
			}
			if conn.Moved() {
				return queue.ErrReconnected
			}
			if w.stalled(ctx) {
				return errWatchStalled
			}
		case <-w.kick:
			if conn.Moved() {
				return queue.ErrReconnected
			}
		case e, ok := <-kw.Updates():
			if !ok {
				return fmt.Errorf("watch %s closed", offboard.BucketControl)
			}
			switch {
			case e == nil && fresh != nil:
				w.replace(fresh, conn, freshSeen)
				fresh = nil
			case e == nil:
				w.markCurrent(conn)
			case fresh != nil:
				// Not seen until the view read anew is in force: the old
				// one may not hold the entry a check found missing.
				freshSeen = max(freshSeen, e.Revision())
				if _, err := fresh.apply(e); err != nil {
					w.log.Warn("control entry ignored or unreadable", zap.String("key", e.Key()), zap.Error(err))
				}
			default:
				w.brought(e)
				w.apply(e, w.started())
			}
		}
	}
}

// brought notes an entry the watch brought. The one a check found
// missing makes the controls fresh again, which is signalled as a change:
// an entry ignored signals none of its own.
func (w *Watcher) brought(e jetstream.KeyValueEntry) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.seen = max(w.seen, e.Revision())
	if w.missing != 0 && w.seen >= w.missing {
		w.missing = 0
		close(w.changed)
		w.changed = make(chan struct{})
	}
}

// stalled says whether the watch has brought nothing for a whole check
// while the bucket holds a pause or budget entry it did not bring. The
// watch is a consumer of one replica on one NATS server: when that
// server is lost and the worker's own connection is not, the watch just
// stops, and the client library notices only once it has missed two
// heartbeats (about ten seconds), while a pause written meanwhile is to
// hold the calls within a second. From the check that finds such an
// entry the controls are not fresh (Fresh); at the next, the watch is
// made again.
func (w *Watcher) stalled(ctx context.Context) bool {
	w.mu.Lock()
	missing, seen := w.missing, w.seen
	w.mu.Unlock()
	if missing != 0 && seen < missing {
		return true
	}
	// A server that cannot answer now leaves the watch as it is.
	found := queue.FirstEntryAfter(ctx, w.stream, offboard.BucketControl, seen, controlKeys()...)
	w.mu.Lock()
	defer w.mu.Unlock()
	w.missing = 0
	if found > w.seen {
		w.missing = found
	}
	return false
}

// reset says whether the bucket was made again since created, or lost an
// entry the view holds without a delete (a purge of its stream).
func (w *Watcher) reset(ctx context.Context, created time.Time) bool {
	w.mu.Lock()
	low := w.view.lowest()
	w.mu.Unlock()
	return queue.BucketReset(ctx, w.kv, created, low)
}

// started says whether the first read of the bucket is over.
func (w *Watcher) started() bool {
	select {
	case <-w.current:
		return true
	default:
		return false
	}
}

// replace puts a view read anew in force and signals the change. A
// control in force before that has no entry at all now went with the
// bucket (made again, or its stream purged), not with a resume: each is
// logged as an error, as the worker goes on calling for it.
func (w *Watcher) replace(v *View, read queue.ConnMark, seen uint64) {
	w.mu.Lock()
	lost := w.view.lostIn(v)
	w.view, w.read = *v, read
	w.seen = max(w.seen, seen)
	if w.missing != 0 && w.seen >= w.missing {
		w.missing = 0
	}
	close(w.changed)
	w.changed = make(chan struct{})
	w.mu.Unlock()
	for _, c := range lost {
		w.log.Error("control lost with the control bucket (made again or purged), not lifted by an operator: no longer in force; set it again with offboardctl",
			c.fields()...)
	}
	w.log.Info("controls read anew", zap.Int("in_force", v.inForce()))
}

func (w *Watcher) markCurrent(read queue.ConnMark) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.read = read
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
	recorded := err == nil || isUnreadable(err)
	if recorded {
		close(w.changed)
		w.changed = make(chan struct{})
	}
	w.mu.Unlock()
	switch {
	case !recorded:
		w.log.Warn("control entry ignored", zap.String("key", e.Key()), zap.Error(err))
		return
	case err != nil:
		w.log.Warn("control entry unreadable", zap.String("key", e.Key()), zap.Error(err))
	}
	switch {
	case live:
		w.log.Info("control changed", c.fields()...)
	case c.inForce():
		w.log.Info("control in force", c.fields()...)
	}
}

// fields are the log fields of a control: its tenant and kind, who set
// it, when and why, and its state.
func (c change) fields() []zap.Field {
	fields := []zap.Field{
		zap.String("tenant", c.tenant), zap.String("control", c.kind),
		zap.String("by", c.entry.By), zap.String("reason", c.entry.Reason), zap.Time("at", c.entry.At),
	}
	if c.kind == "pause" {
		return append(fields, zap.String("priority", string(c.priority)), zap.Bool("paused", c.entry.Paused))
	}
	return append(fields, zap.String("budget", ShownBudget(c.entry.Value)))
}

// ShownBudget is a budget entry's value as logged and shown (offboardctl
// status). A value that is no budget is not quoted: it could be
// anything, a secret pasted there included (the worker ignores it).
func ShownBudget(v string) string {
	if _, err := limiter.ParseWindow(v); err != nil && v != "" && v != UnreadableBudget {
		return "(not a budget)"
	}
	return v
}

// Current is closed once the watcher knows every control that existed
// when it started.
func (w *Watcher) Current() <-chan struct{} { return w.current }

// Fresh says whether the controls known are those in force: read since
// the connection to NATS was last made again. A replica cut off from
// NATS for a while, whose watch the server dropped meanwhile, is told
// nothing of what was written during the cut, and a reconnection is
// seen by the watch only at its next check: until the controls are read
// anew (Changed then), a pause written meanwhile is not known. Asked
// while they are not, the watch looks at once. Neither are they while
// the bucket holds a pause or budget entry the watch did not bring
// (stalled).
func (w *Watcher) Fresh() bool {
	w.mu.Lock()
	read := w.read
	behind := w.missing != 0 && w.seen < w.missing
	w.mu.Unlock()
	if behind {
		return false
	}
	if read == (queue.ConnMark{}) || !read.Moved() {
		return true
	}
	select {
	case w.kick <- struct{}{}:
	default:
	}
	return false
}

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
