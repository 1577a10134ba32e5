package queue

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/contoso-secops/mde-offboard/offboard"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Ledger remembers request ids: the ones being worked on (with the device
// and the time the offboard call was about to be sent) and the completed
// ones with their result. It lives in a JetStream key-value bucket, so
// every replica and every restart sees it.
type Ledger struct {
	kv jetstream.KeyValue
	js jetstream.JetStream // for FinishAsync
}

// NewLedger opens the ledger bucket.
func NewLedger(ctx context.Context, js jetstream.JetStream) (*Ledger, error) {
	kv, err := js.KeyValue(ctx, offboard.BucketLedger)
	if err != nil {
		return nil, fmt.Errorf("ledger: %w", err)
	}
	return &Ledger{kv: kv, js: js}, nil
}

// Entry states.
const (
	// StateClaimed: a message is working on the request id; no offboard
	// call of it has been sent.
	StateClaimed = "claimed"
	StateCalling = "calling" // the offboard call may have been sent
	StateDone    = "done"    // the result is stored
)

// Entry is what the ledger holds for one request id.
type Entry struct {
	State     string `json:"state"`
	Seq       uint64 `json:"seq"` // the request's stream sequence
	MachineID string `json:"machineId,omitempty"`
	// ComputerDNSName is the name a request by name asked for, as the
	// request gave it (empty for a request by id, and in entries of
	// earlier releases): with MachineID, the device it resolved to.
	ComputerDNSName string    `json:"computerDnsName,omitempty"`
	Started         time.Time `json:"started"`
	// Writer marks the process that wrote a claimed or calling entry
	// (Presence.Instance); empty in entries of earlier releases.
	Writer string `json:"writer,omitempty"`
	// Comment is the comment a calling entry's call went out with (empty
	// in entries of earlier releases): a process whose tenants file
	// renders another (a rolling update that changed the template) looks
	// for that call's action by it, and repeats the call with it. In the
	// entry of a failed result that records offboard calls of the request
	// id (Calls, or the result's own attempts) it is the comment those
	// went out with, which a retry looks for their action by.
	Comment string          `json:"comment,omitempty"`
	Result  json.RawMessage `json:"result,omitempty"`
	// Attempt is the attempt of the request the stored result answers
	// (0 in entries written before attempts: the first).
	Attempt int `json:"attempt,omitempty"`
	// Unrouted says that the stored result is the unknown_tenant answer
	// of the message at Seq alone, published under that message's place
	// in the stream (result-seq), by a replica that knew of no replica
	// serving the tenant. Another message of the request id is not
	// answered by it: a tenant configured later does not find its ids
	// taken.
	Unrouted bool `json:"unrouted,omitempty"`
	// Calls, in the entry of a failed result, are offboard calls of the
	// request id made before that result's message, whose action was
	// not found (nil: none known): a retry looks for their action before
	// it calls, whatever calls the stored result counts itself. A retry
	// answered failed before any call of its own (its look for that
	// action refused, say) keeps them so, and so does an unknown_tenant
	// answer (Unrouted) written over such an entry or over a "calling"
	// one, whose call it records then. In a "calling" entry they are the
	// calls made before it (a retry's over a failed result, an earlier
	// delivery's over its own cut-off call) whose action was not found:
	// a delivery that takes the entry up looks for their action too
	// (CalledSince), not only for those made since the entry.
	Calls *EarlierCalls `json:"calls,omitempty"`

	revision uint64
	stored   time.Time // when the server stored it (Get), by its clock
}

// marshal encodes the entry. Its result goes in as it is: it is JSON the
// worker encoded (offboard.Result.Marshal) or read back, and json.Marshal
// would check and compact it again (offboard.MarshalWith).
func (e *Entry) marshal() ([]byte, error) {
	shallow := *e
	shallow.Result = nil
	return offboard.MarshalWith(&shallow, "result", e.Result)
}

// Since is the earlier of Started and when the server stored the entry: a
// bound for what happened after it was written that a writer's clock
// running ahead does not move.
func (e *Entry) Since() time.Time {
	if !e.stored.IsZero() && e.stored.Before(e.Started) {
		return e.stored
	}
	return e.Started
}

// Latest is the later of Started and when the server stored the entry: a
// bound for how long ago it was written that a writer's clock running
// behind does not stretch.
func (e *Entry) Latest() time.Time {
	if e.stored.After(e.Started) {
		return e.stored
	}
	return e.Started
}

// CalledSince is a time before every offboard call of the request id a
// "calling" entry stands for: its own call (Since), and the earlier calls
// it keeps for the same device (Calls).
func (e *Entry) CalledSince() time.Time {
	since := e.Since()
	if c := e.Calls; c != nil && c.MachineID == e.MachineID && !c.Since.IsZero() && c.Since.Before(since) {
		return c.Since
	}
	return since
}

// EarlierCalls are offboard calls of a request id whose effect is not
// known: the device they went to, the name the request asked for (empty
// for a request by id), and a time before any of them went out.
type EarlierCalls struct {
	MachineID       string    `json:"machineId"`
	ComputerDNSName string    `json:"computerDnsName,omitempty"`
	Since           time.Time `json:"since"`
}

// ErrConflict means another worker changed the entry first.
var ErrConflict = errors.New("ledger entry changed by another worker")

func ledgerKey(tenant, requestID string) string {
	// Request ids may hold ':' which keys may not: encode them.
	return "r." + tenant + "." + base64.RawURLEncoding.EncodeToString([]byte(requestID))
}

// ErrUnreadable means a request id's entry is not one the worker can read
// (written by hand, cut short): whether a call of the id went out, and
// what answered it, is not known.
var ErrUnreadable = errors.New("ledger entry cannot be read")

// Get returns the entry of a request id, or nil. An entry that cannot be
// read is returned as an entry of no state, with an error that is
// ErrUnreadable: an answer can be written over it (Put, Finish).
func (l *Ledger) Get(ctx context.Context, tenant, requestID string) (*Entry, error) {
	ctx, cancel := StepCtx(ctx)
	defer cancel()
	kve, err := l.kv.Get(ctx, ledgerKey(tenant, requestID))
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("ledger get: %w", err)
	}
	var e Entry
	if err := json.Unmarshal(kve.Value(), &e); err != nil {
		return &Entry{revision: kve.Revision(), stored: kve.Created()}, fmt.Errorf("ledger entry %s: %w: %w", kve.Key(), ErrUnreadable, err)
	}
	e.revision, e.stored = kve.Revision(), kve.Created()
	return &e, nil
}

// Put writes an entry over prev (nil: the id must be new). It fails with
// ErrConflict when the entry changed since prev was read.
func (l *Ledger) Put(ctx context.Context, tenant, requestID string, prev, e *Entry) error {
	data, err := e.marshal()
	if err != nil {
		return err
	}
	key := ledgerKey(tenant, requestID)
	ctx, cancel := StepCtx(ctx)
	defer cancel()
	var rev uint64
	if prev == nil {
		rev, err = l.kv.Create(ctx, key, data)
	} else {
		rev, err = l.kv.Update(ctx, key, data, prev.revision)
	}
	if errors.Is(err, jetstream.ErrKeyExists) || IsWrongLastSequence(err) {
		return ErrConflict
	}
	if err != nil {
		return fmt.Errorf("ledger put: %w", err)
	}
	e.revision = rev
	return nil
}

// Drop removes the entry of a request id that the caller wrote (prev),
// unless another worker changed it since (ErrConflict): the id has no
// entry again.
func (l *Ledger) Drop(ctx context.Context, tenant, requestID string, prev *Entry) error {
	ctx, cancel := StepCtx(ctx)
	defer cancel()
	err := l.kv.Delete(ctx, ledgerKey(tenant, requestID), jetstream.LastRevision(prev.revision))
	if IsWrongLastSequence(err) {
		return ErrConflict
	}
	if err != nil {
		return fmt.Errorf("ledger drop: %w", err)
	}
	return nil
}

// IsWrongLastSequence says whether a write with an expected last
// sequence (a KV update, a compare-and-swap append) lost to another writer.
func IsWrongLastSequence(err error) bool {
	var apiErr *jetstream.APIError
	return errors.As(err, &apiErr) &&
		(apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequence || apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequenceConstant)
}

// Finish records a request's result over prev, the entry as the caller
// last read or wrote it (nil: none). The entry keeps the attempt the
// result answers. ErrConflict means another worker changed it meanwhile.
func (l *Ledger) Finish(ctx context.Context, tenant, requestID string, prev *Entry, seq uint64, result []byte) error {
	return l.FinishAfter(ctx, tenant, requestID, prev, seq, result, nil, "")
}

// FinishAfter is Finish of a failed result that keeps the earlier calls
// of its request id (nil: none) in its entry (Entry.Calls), and the
// comment the calls it records went out with ("": none known).
func (l *Ledger) FinishAfter(ctx context.Context, tenant, requestID string, prev *Entry, seq uint64, result []byte, calls *EarlierCalls, comment string) error {
	e := &Entry{State: StateDone, Seq: seq, Result: result, Calls: calls, Comment: comment}
	e.Attempt = e.StoredAttempt()
	return l.Put(ctx, tenant, requestID, prev, e)
}

// StoredAttempt is the attempt the stored result answers: at least 1.
func (e *Entry) StoredAttempt() int {
	if e.Attempt > 0 {
		return e.Attempt
	}
	var r struct {
		Attempt int `json:"attempt"`
	}
	_ = json.Unmarshal(e.Result, &r)
	return max(r.Attempt, 1)
}

// Retried says whether a request of the given attempt is worked on again
// rather than answered from this entry: the stored result is failed and
// the attempt is higher than the one it answers. A created, already
// pending or dry-run result always answers (a retry never makes a second
// action).
func (e *Entry) Retried(attempt int) bool {
	if e.State != StateDone {
		return false
	}
	var r struct {
		Outcome string `json:"outcome"`
	}
	if json.Unmarshal(e.Result, &r) != nil || r.Outcome != offboard.OutcomeFailed {
		return false
	}
	return attempt > e.StoredAttempt()
}

// FinishAsync is Finish over an entry the caller holds, without the
// wait: the entry goes out at once as a compare-and-swap (the bucket's
// expected last sequence of the key is prev's revision), so that it can
// travel beside the result. The returned Stored waits for it and says
// ErrConflict when another worker changed the entry meanwhile.
func (l *Ledger) FinishAsync(tenant, requestID string, prev *Entry, seq uint64, result []byte) (Stored, error) {
	if prev == nil {
		return nil, errors.New("ledger finish: no entry to write over")
	}
	e := &Entry{State: StateDone, Seq: seq, Result: result}
	data, err := e.marshal()
	if err != nil {
		return nil, err
	}
	m := nats.NewMsg(l.subject(ledgerKey(tenant, requestID)))
	m.Data = data
	f, err := l.js.PublishMsgAsync(m, jetstream.WithExpectLastSequencePerSubject(prev.revision))
	if err != nil {
		return nil, fmt.Errorf("ledger put: %w", err)
	}
	return func(ctx context.Context) error {
		select {
		case pa := <-f.Ok():
			e.revision = pa.Sequence
			return nil
		case err := <-f.Err():
			if IsWrongLastSequence(err) {
				return ErrConflict
			}
			return fmt.Errorf("ledger put: %w", err)
		case <-ctx.Done():
			return ctx.Err()
		}
	}, nil
}

// subject is the subject a key's values are stored under: a put is a
// publish on it.
func (l *Ledger) subject(key string) string { return "$KV." + l.kv.Bucket() + "." + key }

// maxKeyedActionID is the longest action id a tracking key holds
// encoded whole: a GUID is 36 characters. A longer one (an API, or a
// proxy before it, answering garbage) is keyed by its hash, since a key
// goes into the subjects of the ledger's requests, and a request line
// longer than the server allows (4 KiB by default) makes it close the
// connection.
const maxKeyedActionID = 256

func trackKey(tenant, actionID string) string {
	if len(actionID) > maxKeyedActionID {
		// '=' is outside the base64 alphabet used below: no id encoded
		// whole has this key.
		sum := sha256.Sum256([]byte(actionID))
		return "a." + tenant + ".=" + hex.EncodeToString(sum[:])
	}
	return "a." + tenant + "." + base64.RawURLEncoding.EncodeToString([]byte(actionID))
}

// Track stores the tracking state of an action.
func (l *Ledger) Track(ctx context.Context, tenant, actionID string, state []byte) error {
	if _, err := l.kv.Put(ctx, trackKey(tenant, actionID), state); err != nil {
		return fmt.Errorf("ledger track: %w", err)
	}
	return nil
}

// TrackedState returns an action's tracking state and its revision; nil
// if the action is not followed (any more).
func (l *Ledger) TrackedState(ctx context.Context, tenant, actionID string) ([]byte, uint64, error) {
	e, err := l.kv.Get(ctx, trackKey(tenant, actionID))
	switch {
	case errors.Is(err, jetstream.ErrKeyNotFound):
		return nil, 0, nil
	case err != nil:
		return nil, 0, fmt.Errorf("ledger tracked state: %w", err)
	}
	return e.Value(), e.Revision(), nil
}

// TrackOver stores an action's tracking state over the revision the caller
// read, and returns the revision it stored. ErrConflict means another
// replica changed it meanwhile.
func (l *Ledger) TrackOver(ctx context.Context, tenant, actionID string, state []byte, rev uint64) (uint64, error) {
	next, err := l.kv.Update(ctx, trackKey(tenant, actionID), state, rev)
	if err != nil {
		if IsWrongLastSequence(err) || errors.Is(err, jetstream.ErrKeyExists) {
			return 0, ErrConflict
		}
		return 0, fmt.Errorf("ledger track: %w", err)
	}
	return next, nil
}

// TrackNew starts following an action: it stores its tracking state unless
// the action is followed already (ErrConflict).
func (l *Ledger) TrackNew(ctx context.Context, tenant, actionID string, state []byte) error {
	if _, err := l.kv.Create(ctx, trackKey(tenant, actionID), state); err != nil {
		if errors.Is(err, jetstream.ErrKeyExists) || IsWrongLastSequence(err) {
			return ErrConflict
		}
		return fmt.Errorf("ledger track: %w", err)
	}
	return nil
}

// ScanTracked calls fn with the tracking state of each of a tenant's
// followed actions, in one pass over the bucket (a consumer, not one read
// per action), and holds nothing itself: the caller keeps what it needs.
// It stops at fn's first error, and fails when states were sent that it
// did not receive (a reconnect). The states are pulled trackScanBatch at a
// time: a watcher's push consumer was sent as many as the server's flow
// control lets through (up to 32 MiB), held in memory until fn took them,
// for each tracking tenant's scan at once.
func (l *Ledger) ScanTracked(ctx context.Context, tenant string, fn func(state []byte) error) error {
	stream := "KV_" + l.kv.Bucket()
	cons, err := l.js.CreateConsumer(ctx, stream, jetstream.ConsumerConfig{
		FilterSubject:     l.subject("a." + tenant + ".*"),
		DeliverPolicy:     jetstream.DeliverLastPerSubjectPolicy,
		AckPolicy:         jetstream.AckNonePolicy,
		MemoryStorage:     true,
		InactiveThreshold: trackScanIdle,
	})
	if err != nil {
		return fmt.Errorf("ledger scan tracked: %w", err)
	}
	defer func() {
		// Its inactive threshold removes it too, should this fail.
		dctx, cancel := StepCtx(context.WithoutCancel(ctx))
		defer cancel()
		_ = l.js.DeleteConsumer(dctx, stream, cons.CachedInfo().Name)
	}()
	if cons.CachedInfo().NumPending == 0 {
		return nil
	}
	var waits scanWaits
	for unpulled := 0; ; {
		from := waits.got.Load()
		err := readTracked(ctx, cons, &waits, fn)
		if !errors.Is(err, errScanUnpulled) {
			return err
		}
		if waits.got.Load() != from {
			unpulled = 0
		}
		if unpulled++; unpulled > trackScanUnheard {
			return fmt.Errorf("ledger scan tracked: %w", err)
		}
	}
}

// readTracked reads cons's states into fn with one pull iterator until
// every stored state has been seen, or fails; errScanUnpulled: its pull
// was not taken, and nothing is on its way, so a new iterator may pull
// again.
func readTracked(ctx context.Context, cons jetstream.Consumer, waits *scanWaits, fn func(state []byte) error) error {
	it, err := cons.Messages(jetstream.PullMaxMessages(trackScanBatch))
	if err != nil {
		return fmt.Errorf("ledger scan tracked: %w", err)
	}
	defer it.Stop()
	sctx, stop := context.WithCancelCause(ctx)
	defer stop(nil)
	go waits.watch(sctx, cons, stop)
	for {
		waits.waiting.Store(true)
		m, err := it.Next(jetstream.NextContext(sctx))
		waits.waiting.Store(false)
		waits.read.Add(1)
		if err != nil {
			if cause := context.Cause(sctx); errors.Is(cause, errScanDrained) {
				return nil
			} else if errors.Is(cause, errScanUnpulled) {
				return errScanUnpulled
			} else if cause != nil {
				return fmt.Errorf("ledger scan tracked: %w", cause)
			}
			return fmt.Errorf("ledger scan tracked: %w", err)
		}
		meta, err := m.Metadata()
		if err != nil {
			return fmt.Errorf("ledger scan tracked: %w", err)
		}
		// The consumer acknowledges nothing: a state sent and not
		// received (on the wire when the connection broke, or dropped
		// by the client when the pull asked again at a reconnect
		// overflowed the states still to be read) is not sent again.
		if meta.Sequence.Consumer != waits.got.Load()+1 {
			return fmt.Errorf("ledger scan tracked: %w", errScanLost)
		}
		waits.got.Store(meta.Sequence.Consumer)
		if op := m.Headers().Get(kvOperation); op == "" {
			if err := fn(m.Data()); err != nil {
				return err
			}
		}
		if meta.NumPending == 0 { // every stored state has been seen
			return nil
		}
	}
}

// scanWaits is what a scan's watch (see watch) knows of its reader. One
// watch per scan, not a deadline on each wait: a timer for each state
// took 0.7 s more of the worker's CPU in a scan of 250,000.
type scanWaits struct {
	waiting atomic.Bool  // the reader waits for the next state
	read    atomic.Int64 // the states it has had so far
	// got is the consumer sequence of the last state it has had, every
	// one before it had too.
	got atomic.Uint64
}

// errScanDrained ends a scan that has nothing left to read.
var errScanDrained = errors.New("no tracked state left to read")

// errScanUnpulled ends a scan's read whose pull was not taken.
var errScanUnpulled = errors.New("the scan's pull was not taken")

// errScanLost ends a scan that has missed states its consumer sent: it
// has not seen every followed action.
var errScanLost = errors.New("tracked states sent were not received (the connection to NATS was lost mid-scan)")

// watch ends a scan whose reader has waited trackScanStall for its next
// state with none pending: the states counted when its consumer was made
// may have expired since (the ledger's TTL), and the last one to come
// would never come. A consumer gone ends it with the error, and states
// sent that the reader never had (the last ones, lost with a connection)
// with errScanLost. A reader that has waited trackScanUnpulled, whose
// consumer holds no pull and has sent every state the reader had, twice
// in a row a tick apart, has had its pull not taken (a server of a
// cluster answers "no responders" to the first pulls of a consumer just
// made until it learns which server leads it, and the client reads that
// answer as nothing): its read ends with errScanUnpulled, to pull again.
// The library's missed beats do not say so: a pull a busy server took
// late misses them too, and asked again on top of it, both answers at
// once overflowed what the client holds for the reader.
func (w *scanWaits) watch(ctx context.Context, cons jetstream.Consumer, stop context.CancelCauseFunc) {
	ticker := time.NewTicker(trackScanTick)
	defer ticker.Stop()
	last, idle, unpulled := int64(-1), time.Duration(0), 0
	for {
		select {
		case <-ctx.Done():
			return
		case <-ticker.C:
		}
		read := w.read.Load()
		if read != last || !w.waiting.Load() {
			last, idle, unpulled = read, 0, 0
			continue
		}
		if idle += trackScanTick; idle < trackScanUnpulled {
			continue
		}
		stalled := idle >= trackScanStall
		info, err := cons.Info(ctx)
		switch {
		case ctx.Err() != nil:
			return
		case err != nil:
			if stalled {
				stop(err)
				return
			}
		case w.read.Load() != read: // one came meanwhile
			continue
		case info.Delivered.Consumer > w.got.Load():
			if stalled {
				stop(errScanLost)
				return
			}
		case info.NumPending == 0:
			if stalled {
				stop(errScanDrained)
				return
			}
		case info.NumWaiting == 0:
			if unpulled++; unpulled >= 2 {
				stop(errScanUnpulled)
				return
			}
			continue
		}
		unpulled = 0
	}
}

// kvOperation is the header of a key-value bucket's delete and purge
// markers (DEL, PURGE); a value stored has none.
const kvOperation = "KV-Operation"

// trackScanStall is how long a scan's reader waits for its next state
// before the scan looks at whether any is left to read.
const trackScanStall = 5 * time.Second

// trackScanUnpulled is how long a scan's reader waits for its next state
// before the scan looks at whether its pull was taken.
const trackScanUnpulled = 2 * time.Second

// trackScanTick is how often a scan looks at whether its reader waits.
const trackScanTick = time.Second

// trackScanIdle is how long the server keeps a scan's consumer that is
// read no more (its process gone mid-scan).
const trackScanIdle = time.Minute

// Tracked returns the tracking states of a tenant's actions (all of them
// in memory: for tests and tools, not for the tracker).
func (l *Ledger) Tracked(ctx context.Context, tenant string) ([][]byte, error) {
	var out [][]byte
	err := l.ScanTracked(ctx, tenant, func(state []byte) error {
		out = append(out, state)
		return nil
	})
	return out, err
}

// trackScanUnheard bounds the pulls in a row not taken that a scan asks
// again.
const trackScanUnheard = 3

// trackScanBatch is how many states a scan of a tenant's followed
// actions asks the server for at a time.
const trackScanBatch = 1000
