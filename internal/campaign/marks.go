package campaign

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/contoso-secops/mde-offboard/internal/queue"
	"github.com/contoso-secops/mde-offboard/offboard"
)

// Mark is a campaign's entry in the control bucket: its cancel, or the
// record that a run of it started (Started), which a cancel replaces.
type Mark struct {
	Cancelled bool      `json:"cancelled"`
	By        string    `json:"by,omitempty"`
	Reason    string    `json:"reason,omitempty"`
	At        time.Time `json:"at"`
	// Started is when a run of the campaign first started (MarkStarted);
	// zero in a cancel.
	Started time.Time `json:"started,omitzero"`
}

// keyPrefix starts every campaign key of the control bucket:
// campaign.<tenant>.<name>.
const keyPrefix = "campaign."

// Key is a campaign's key in the control bucket.
func Key(tenant, name string) string { return keyPrefix + tenant + "." + name }

// splitKey reads the tenant and name of a campaign key. Tenant names hold
// no '.', so the first one after the prefix ends the tenant.
func splitKey(key string) (tenant, name string, ok bool) {
	rest, found := strings.CutPrefix(key, keyPrefix)
	if !found {
		return "", "", false
	}
	return strings.Cut(rest, ".")
}

// ControlBucket opens the control bucket, creating it when it does not
// exist yet. An existing bucket is used as it is: whoever set it up (the
// worker's setup, deploy/nats) owns its settings.
func ControlBucket(ctx context.Context, js jetstream.JetStream) (jetstream.KeyValue, error) {
	kv, err := js.KeyValue(ctx, offboard.BucketControl)
	if errors.Is(err, jetstream.ErrBucketNotFound) {
		// The definition the worker's setup creates (queue.Ensure), with
		// as many copies as the workers keep of their requests
		// (--stream-replicas): made with one, the cancel marks and pauses
		// lived on one node until a worker's setup ran again.
		kv, err = js.CreateKeyValue(ctx, queue.Settings{Replicas: streamReplicas(ctx, js)}.Control())
		if errors.Is(err, jetstream.ErrBucketExists) {
			kv, err = js.KeyValue(ctx, offboard.BucketControl)
		}
	}
	if err != nil {
		return nil, fmt.Errorf("bucket %s: %w", offboard.BucketControl, err)
	}
	return kv, nil
}

// streamReplicas is the number of copies the request stream keeps, as
// the workers' setup made it; 0 (the default, one) when it cannot be read.
func streamReplicas(ctx context.Context, js jetstream.JetStream) int {
	s, err := js.Stream(ctx, offboard.StreamRequests)
	if err != nil {
		return 0
	}
	return s.CachedInfo().Config.Replicas
}

// ErrCancelledAlready says that the campaign's cancel mark was there
// already, and was left as it is.
var ErrCancelledAlready = errors.New("cancelled already")

// SetMark writes a campaign's mark, unless it has a cancel mark already
// (ErrCancelledAlready): when the server stored that mark tells the
// campaign's requests from later ones that merely have the form of its
// ids (Watcher.Cancelled), so a second cancel must not move it.
func SetMark(ctx context.Context, kv jetstream.KeyValue, tenant, name string, m Mark) error {
	data, err := json.Marshal(m)
	if err != nil {
		return err
	}
	key := Key(tenant, name)
	for tries := 0; ; tries++ {
		_, err = kv.Create(ctx, key, data)
		if errors.Is(err, jetstream.ErrKeyExists) {
			var e jetstream.KeyValueEntry
			if e, err = kv.Get(ctx, key); err == nil {
				var old Mark
				if json.Unmarshal(e.Value(), &old) == nil && old.Cancelled {
					return ErrCancelledAlready
				}
				_, err = kv.Update(ctx, key, data, e.Revision())
			}
		}
		// Another writer came between the read and the write (two
		// operators cancelling at once): read again.
		if tries < 5 && (errors.Is(err, jetstream.ErrKeyExists) || queue.IsWrongLastSequence(err)) {
			continue
		}
		if err != nil {
			return fmt.Errorf("mark campaign %s of %s: %w", name, tenant, err)
		}
		return nil
	}
}

// MarkStarted records that a run of the campaign started, by, at, unless
// the campaign has a mark already (a cancel, or an earlier run's record,
// which are kept). A run records it before it reads the tenant's backlog
// and publishes: a cancel issued meanwhile finds the campaign, though
// none of its requests was stored yet, and the run sees the cancel before
// its first publish.
func MarkStarted(ctx context.Context, kv jetstream.KeyValue, tenant, name, by string, at time.Time) error {
	data, err := json.Marshal(Mark{By: by, At: at, Started: at})
	if err != nil {
		return err
	}
	if _, err := kv.Create(ctx, Key(tenant, name), data); err != nil && !errors.Is(err, jetstream.ErrKeyExists) {
		return fmt.Errorf("record campaign %s of %s: %w", name, tenant, err)
	}
	return nil
}

// GetMark reads a campaign's mark; nil when it has none. A value that
// does not read as a mark (written by hand) is none: the workers do not
// take it as a cancel (IsCancel), and SetMark writes over it.
func GetMark(ctx context.Context, kv jetstream.KeyValue, tenant, name string) (*Mark, error) {
	e, err := kv.Get(ctx, Key(tenant, name))
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read campaign %s of %s: %w", name, tenant, err)
	}
	return readMark(e.Value()), nil
}

// readMark reads a mark's value; nil for one that does not read as a mark.
func readMark(data []byte) *Mark {
	var m Mark
	if json.Unmarshal(data, &m) != nil {
		return nil
	}
	return &m
}

// IsCancel says whether a control bucket entry is a cancel mark in force.
func IsCancel(e jetstream.KeyValueEntry) bool {
	if e.Operation() != jetstream.KeyValuePut {
		return false
	}
	m := readMark(e.Value())
	return m != nil && m.Cancelled
}

// Watcher knows which campaigns are cancelled, and since when, from a
// watch of the control bucket: a worker asks it for every request it
// takes, without a round trip.
type Watcher struct {
	kv     jetstream.KeyValue
	nc     *nats.Conn
	landed func(tenant string) // nil: nobody is told
	// w is the watch, created its bucket's creation time and conn the
	// connection's mark when it started; only Run changes them once
	// NewWatcher returned.
	w       jetstream.KeyWatcher
	created time.Time
	conn    queue.ConnMark
	mu      sync.RWMutex
	// cancelled holds when the server stored each cancel mark, by
	// tenant + "." + name; revisions the bucket's revision of each, as
	// last written.
	cancelled map[string]time.Time
	revisions map[string]uint64
	// marksRead is closed, and replaced, whenever a watch has read every
	// mark stored (Read); kick has Run look at once whether the
	// connection was made again (Fresh), rather than at its next check.
	marksRead chan struct{}
	kick      chan struct{}
	// stream is the bucket's, to look for marks the watch did not bring
	// (nil: not looked for); seen is the highest revision the watch
	// brought, missing a mark the bucket holds that the watch had not
	// brought when a check found it (0: none). See stalled.
	stream        jetstream.Stream
	seen, missing uint64
}

// NewWatcher starts watching the campaign marks and returns once it holds
// every mark stored now, so that a worker started after a cancel sees it
// before its first request. landed, when set, is told the tenant of every
// cancel mark the watch reads, those stored now included, once Cancelled
// answers by it: a worker ends its tenant's waits with it. It must not
// block.
func NewWatcher(ctx context.Context, js jetstream.JetStream, landed func(tenant string)) (*Watcher, error) {
	kv, err := ControlBucket(ctx, js)
	if err != nil {
		return nil, err
	}
	stream, err := js.Stream(ctx, "KV_"+offboard.BucketControl)
	if err != nil {
		return nil, fmt.Errorf("bucket %s: %w", offboard.BucketControl, err)
	}
	w, err := WatchBucket(ctx, kv, js.Conn(), landed)
	if err != nil {
		return nil, err
	}
	w.stream = stream // before Run, which reads it
	return w, nil
}

// WatchBucket is NewWatcher over a control bucket opened already, whose
// connection to NATS is nc: one that must not make the bucket (offboardctl
// campaign run) opens it itself.
func WatchBucket(ctx context.Context, kv jetstream.KeyValue, nc *nats.Conn, landed func(tenant string)) (*Watcher, error) {
	w := &Watcher{kv: kv, nc: nc, landed: landed, cancelled: map[string]time.Time{}, revisions: map[string]uint64{},
		marksRead: make(chan struct{}), kick: make(chan struct{}, 1)}
	if err := w.watch(ctx); err != nil {
		return nil, err
	}
	return w, nil
}

// watch starts a watch of the marks and puts the marks stored now in
// force, in place of those held before: a mark that is gone from the
// bucket (made again, or purged) is gone from the watcher too. A read
// during which the connection to NATS was made again starts over: the
// server may have lost the watch's consumer before it sent the marks.
func (w *Watcher) watch(ctx context.Context) error {
	for {
		if err := w.read(ctx); !errors.Is(err, queue.ErrReconnected) {
			return err
		}
	}
}

// read is one watch's read of the marks stored now (watch).
func (w *Watcher) read(ctx context.Context) error {
	conn := queue.MarkConn(w.nc)
	created, _ := queue.BucketCreated(ctx, w.kv) // not known: only a purge is seen
	// The watch outlives ctx, the read's: Run stops it. Its own context
	// ends with it (ownWatch).
	wctx, cancel := context.WithCancel(context.Background())
	kw, err := w.kv.Watch(wctx, keyPrefix+">")
	if err != nil {
		cancel()
		return fmt.Errorf("watch %s: %w", offboard.BucketControl, err)
	}
	kw = ownWatch{KeyWatcher: kw, cancel: cancel}
	check := time.NewTicker(queue.BucketCheck) // real time: paces the look at the connection
	defer check.Stop()
	fresh := &Watcher{cancelled: map[string]time.Time{}, revisions: map[string]uint64{}}
	for {
		select {
		case e, ok := <-kw.Updates():
			if !ok {
				_ = kw.Stop()
				return fmt.Errorf("watch %s: closed", offboard.BucketControl)
			}
			if e != nil {
				fresh.apply(e)
				continue
			}
			// Every stored mark is in.
			w.mu.Lock()
			w.w, w.created, w.conn = kw, created, conn
			w.cancelled, w.revisions = fresh.cancelled, fresh.revisions
			w.seen, w.missing = fresh.seen, 0
			close(w.marksRead)
			w.marksRead = make(chan struct{})
			w.mu.Unlock()
			if w.landed != nil {
				for _, tenant := range fresh.tenants() {
					w.landed(tenant)
				}
			}
			return nil
		case <-check.C:
			if conn.Moved() {
				_ = kw.Stop()
				return queue.ErrReconnected
			}
		case <-ctx.Done():
			_ = kw.Stop()
			return ctx.Err()
		}
	}
}

// ownWatch is a watch with a context of its own, which its Stop ends.
// The client library ends a watch's goroutine when the watch's context
// ends, or when its unsubscribe reaches the connection: one closed for
// good (the server refused the credentials) no longer takes it, and a
// watch under a context that never ends left its goroutine for the
// process's life.
type ownWatch struct {
	jetstream.KeyWatcher
	cancel context.CancelFunc
}

// Stop stops the watch and ends its context.
func (w ownWatch) Stop() error {
	defer w.cancel()
	return w.KeyWatcher.Stop()
}

// tenants are the tenants of the cancel marks held.
func (w *Watcher) tenants() []string {
	var out []string
	for k := range w.cancelled {
		if tenant, _, ok := strings.Cut(k, "."); ok && !slices.Contains(out, tenant) {
			out = append(out, tenant)
		}
	}
	return out
}

// Run applies changes until ctx ends, then stops the watch. A watch that
// ends, whose bucket was made again or purged, or whose connection was
// made again, is started again.
func (w *Watcher) Run(ctx context.Context) {
	defer func() { _ = w.w.Stop() }()
	check := time.NewTicker(queue.BucketCheck) // real time: paces requests to the server
	defer check.Stop()
	for {
		select {
		case e, ok := <-w.w.Updates():
			if ok && e != nil {
				w.apply(e)
			}
			if ok {
				continue
			}
		case <-check.C:
			if !w.reset(ctx) && !w.stalled(ctx) {
				continue
			}
		case <-w.kick:
			if !w.moved() {
				continue
			}
		case <-ctx.Done():
			return
		}
		// The watch ended, or its bucket is not the one it read: read
		// the marks anew, until that works or ctx ends.
		old := w.w
		for w.watch(ctx) != nil {
			select {
			case <-ctx.Done():
				return
			case <-check.C:
			}
		}
		_ = old.Stop()
	}
}

// Fresh says whether the marks known are those in force: read since the
// connection to NATS was last made again. A replica cut off from NATS
// for a while, whose watch the server dropped meanwhile, is told nothing
// of a cancel written during the cut, and Run sees a reconnection only
// at its next check: until the marks are read anew (Read then), such a
// cancel is not known. Asked while they are not, Run looks at once.
func (w *Watcher) Fresh() bool {
	if w.behind() {
		return false
	}
	if !w.moved() {
		return true
	}
	select {
	case w.kick <- struct{}{}:
	default:
	}
	return false
}

// Read is closed once a watch has read every mark stored, after the
// call. Take it before asking Fresh, so no read falls in between.
func (w *Watcher) Read() <-chan struct{} {
	w.mu.RLock()
	defer w.mu.RUnlock()
	return w.marksRead
}

// behind says whether the bucket holds a mark the watch did not bring
// when a check looked (stalled).
func (w *Watcher) behind() bool {
	w.mu.RLock()
	defer w.mu.RUnlock()
	return w.missing != 0 && w.seen < w.missing
}

// stalled says whether the watch has brought nothing for a whole check
// while the bucket holds a mark it did not bring. The watch is a
// consumer of one replica on one NATS server: when that server is lost
// and the worker's own connection is not, the watch just stops, and the
// client library notices only once it has missed two heartbeats (about
// ten seconds), while the requests of a campaign cancelled meanwhile are
// not to be sent. From the check that finds such a mark the marks are
// not fresh (Fresh); at the next, the watch is made again.
func (w *Watcher) stalled(ctx context.Context) bool {
	if w.stream == nil {
		return false
	}
	w.mu.RLock()
	missing, seen := w.missing, w.seen
	w.mu.RUnlock()
	if missing != 0 && seen < missing {
		return true
	}
	// A server that cannot answer now leaves the watch as it is.
	found := queue.FirstEntryAfter(ctx, w.stream, offboard.BucketControl, seen, keyPrefix+">")
	w.mu.Lock()
	defer w.mu.Unlock()
	w.missing = 0
	if found > w.seen {
		w.missing = found
	}
	return false
}

// moved says whether the connection to NATS was made again since the
// watch whose marks are held started.
func (w *Watcher) moved() bool {
	w.mu.RLock()
	defer w.mu.RUnlock()
	return w.conn.Moved()
}

// reset says whether the bucket was made again since the watch started,
// or lost a mark the watcher holds without a delete (a purge), or whether
// the connection to NATS was made again since (queue.ConnMark).
func (w *Watcher) reset(ctx context.Context) bool {
	w.mu.RLock()
	if w.conn.Moved() {
		w.mu.RUnlock()
		return true
	}
	created, lowest := w.created, uint64(0)
	for _, rev := range w.revisions {
		if lowest == 0 || rev < lowest {
			lowest = rev
		}
	}
	w.mu.RUnlock()
	return queue.BucketReset(ctx, w.kv, created, lowest)
}

func (w *Watcher) apply(e jetstream.KeyValueEntry) {
	w.mu.Lock()
	w.seen = max(w.seen, e.Revision())
	if w.missing != 0 && w.seen >= w.missing {
		// The mark a check found missing came: the marks are fresh
		// again, which those waiting on Read are told.
		w.missing = 0
		close(w.marksRead)
		w.marksRead = make(chan struct{})
	}
	w.mu.Unlock()
	tenant, name, ok := splitKey(e.Key())
	if !ok {
		return
	}
	cancelled := IsCancel(e)
	w.mu.Lock()
	if cancelled {
		// The first cancel's time stands: a mark written again (by hand;
		// offboardctl does not) must not make requests that came between
		// the two the campaign's.
		at, had := w.cancelled[tenant+"."+name]
		if !had || e.Created().Before(at) {
			at = e.Created()
		}
		w.cancelled[tenant+"."+name] = at
		w.revisions[tenant+"."+name] = e.Revision()
	} else {
		delete(w.cancelled, tenant+"."+name)
		delete(w.revisions, tenant+"."+name)
	}
	w.mu.Unlock()
	if cancelled && w.landed != nil {
		w.landed(tenant)
	}
}

// ClockMargin is how long after its campaign's cancel mark a request
// whose id has the campaign's form may have been stored and still be
// withdrawn. The two times come from the servers' clocks: the mark's from
// the control bucket's leader, the request's from the request stream's,
// which in a cluster may be another server, a little ahead or behind. A
// campaign run stops publishing once it reads the mark, and the rows it
// had sent by then are stored a moment after it. An unrelated request
// that merely has the form of the campaign's ids is withdrawn only if it
// came within this margin of the cancel.
const ClockMargin = 2 * time.Second

// Cancelled says whether the request belongs to a cancelled campaign of
// the tenant, and which. It does when its source names the campaign
// (campaign:<name>), and when its request id has the form of the
// campaign's (<name>-<6 digits>) and it was stored in the request stream
// before the cancel mark (within ClockMargin after it): a cancel
// withdraws the requests waiting when it is made, and a request that
// merely has that form later (a CMDB's inc-004711 after campaign inc) is
// not the campaign's. stored is when the server stored the request; zero
// is taken as before any mark: a time not known, or the retry of a
// request answered cancelled, which was the campaign's.
func (w *Watcher) Cancelled(tenant string, r offboard.Request, stored time.Time) (string, bool) {
	bySource, byID := Names(r)
	w.mu.RLock()
	defer w.mu.RUnlock()
	if len(w.cancelled) == 0 {
		return "", false
	}
	if _, ok := w.cancelled[tenant+"."+bySource]; ok && bySource != "" {
		return bySource, true
	}
	if at, ok := w.cancelled[tenant+"."+byID]; ok && byID != "" && storedBefore(stored, at) {
		return byID, true
	}
	return "", false
}

// ReadCancels reads the cancel marks stored now in the control bucket, as
// a watcher holds them, without following later ones: for one look at
// the requests they withdraw (offboardctl status). Run is not to be
// called on it.
func ReadCancels(ctx context.Context, kv jetstream.KeyValue) (*Watcher, error) {
	w := &Watcher{cancelled: map[string]time.Time{}, revisions: map[string]uint64{}}
	if err := queue.EachEntry(ctx, kv, w.apply); err != nil {
		return nil, fmt.Errorf("read %s: %w", offboard.BucketControl, err)
	}
	return w, nil
}

// HasCancels says whether a campaign of tenant has a cancel mark in
// force.
func (w *Watcher) HasCancels(tenant string) bool {
	w.mu.RLock()
	defer w.mu.RUnlock()
	for k := range w.cancelled {
		if t, _, _ := strings.Cut(k, "."); t == tenant {
			return true
		}
	}
	return false
}

// CampaignCancelled says whether the campaign name of tenant has a cancel
// mark in force.
func (w *Watcher) CampaignCancelled(tenant, name string) bool {
	w.mu.RLock()
	defer w.mu.RUnlock()
	_, ok := w.cancelled[tenant+"."+name]
	return ok
}

// storedBefore says whether a request stored at stored (zero: taken as
// before) came before a cancel mark stored at mark, within ClockMargin.
func storedBefore(stored, mark time.Time) bool {
	return stored.IsZero() || !stored.After(mark.Add(ClockMargin))
}
