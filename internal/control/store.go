package control

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/contoso-secops/mde-offboard/internal/queue"
	"github.com/contoso-secops/mde-offboard/offboard"
)

// Change is an operator's change of a tenant's controls.
type Change struct {
	Tenant   string
	Action   string // ActionPause, ActionResume, ActionBudget, ActionBudgetClear
	Priority string // pause and resume: normal, bulk or all
	Value    string // ActionBudget: "<count>/<duration>", already checked
	By       string
	Reason   string
}

// Store writes operators' changes into the control bucket and publishes
// each as an Event. offboardctl uses it.
type Store struct {
	js       jetstream.JetStream
	kv       jetstream.KeyValue
	subjects offboard.Subjects
	now      func() time.Time
	// epoch is when the bucket was made (Unix nanoseconds): a bucket made
	// again numbers its revisions from 1 again.
	epoch int64
	// wrote, if set, is told of each key put writes (tests).
	wrote func(key string)
}

// ErrNoBucket says the control bucket does not exist: no worker has set up
// the streams yet, and deploy/nats was not applied.
var ErrNoBucket = errors.New("control bucket " + offboard.BucketControl + " does not exist (start a worker, or apply deploy/nats)")

// Open opens the control bucket, which must exist (queue.Ensure).
func Open(ctx context.Context, js jetstream.JetStream, subjects offboard.Subjects) (*Store, error) {
	kv, err := js.KeyValue(ctx, offboard.BucketControl)
	if errors.Is(err, jetstream.ErrBucketNotFound) {
		return nil, ErrNoBucket
	}
	if err != nil {
		return nil, fmt.Errorf("bucket %s: %w", offboard.BucketControl, err)
	}
	created, err := queue.BucketCreated(ctx, kv)
	if err != nil {
		return nil, fmt.Errorf("bucket %s: %w", offboard.BucketControl, err)
	}
	return &Store{js: js, kv: kv, subjects: subjects, now: time.Now, epoch: created.UnixNano()}, nil
}

// Apply writes the change into the bucket, where every replica sees it,
// then publishes it on the tenant's control subject. An error after the
// write says so: the change is in force, its event is missing.
func (s *Store) Apply(ctx context.Context, c Change) (Event, error) {
	at := s.now().UTC()
	ev := Event{Tenant: c.Tenant, Action: c.Action, By: c.By, Reason: c.Reason, At: at}
	entry := Entry{By: c.By, Reason: c.Reason, At: at}
	var keys []string
	switch c.Action {
	case ActionPause, ActionResume:
		prios, err := ParsePriority(c.Priority)
		if err != nil {
			return Event{}, err
		}
		ev.Priority = c.Priority
		if ev.Priority == "" {
			ev.Priority = PriorityAll
		}
		entry.Paused = c.Action == ActionPause
		for _, p := range writeOrder(prios) {
			keys = append(keys, PauseKey(c.Tenant, p))
		}
	case ActionBudget, ActionBudgetClear:
		if c.Action == ActionBudget {
			entry.Value, ev.Value = c.Value, c.Value
		}
		keys = append(keys, BudgetKey(c.Tenant))
	default:
		return Event{}, fmt.Errorf("unknown control action %q", c.Action)
	}
	data, err := json.Marshal(entry)
	if err != nil {
		return Event{}, err
	}
	written, err := s.put(ctx, keys, data)
	if err != nil {
		var failed *keyError
		if errors.As(err, &failed) && WriteRefused(s.js.Conn(), failed.key) {
			// Refused, not lost: it was not stored.
			err = refusedWrite{err}
		}
		if ev.Priority == "" {
			return Event{}, budgetNotWritten(c, err)
		}
		return s.partly(ctx, c, ev, keys, written, err)
	}
	ev.Revision = written[keys[len(keys)-1]]
	if err := s.publish(ctx, ev); err != nil {
		return ev, fmt.Errorf("%s is in force, but its audit event was not published: %w", c.Action, err)
	}
	return ev, nil
}

// partly is Apply's answer to a pause or resume of both priorities cut
// short after some of its keys: the part written is in force, and the
// audit trail has it as the change of that priority alone. Its event is
// published even when the write's time ran out (the usual reason for the
// cut), under a short time of its own.
func (s *Store) partly(ctx context.Context, c Change, ev Event, keys []string, written map[string]uint64, err error) (Event, error) {
	err = notAllWritten(c, keys, written, err)
	done := 0
	for _, k := range keys {
		if rev := written[k]; rev != 0 {
			_, _, p, _ := ParseKey(k)
			done, ev.Priority, ev.Revision = done+1, string(p), rev
		}
	}
	switch done {
	case 0:
		return Event{}, err
	case len(keys): // each written, though not in the last try
		ev.Priority = c.Priority
	}
	pctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), partlyEventWait)
	defer cancel()
	if perr := s.publish(pctx, ev); perr != nil {
		return Event{}, fmt.Errorf("%w; and the audit event of %s %s was not published: %w", err, c.Action, ev.Priority, perr)
	}
	return Event{}, err
}

// partlyEventWait is how long partly waits for NATS to take the event of
// a change cut short.
const partlyEventWait = 5 * time.Second

// publish publishes a change's event on the tenant's control subject,
// with the bucket's creation time and the revision of the key written in
// its message id: published again, the stream drops the repeat, and the
// event of a bucket made again, whose revisions start at 1 again, is not
// taken for a repeat of the old bucket's.
func (s *Store) publish(ctx context.Context, ev Event) error {
	body, err := json.Marshal(ev)
	if err != nil {
		return err
	}
	msg := nats.NewMsg(s.subjects.Control(ev.Tenant))
	msg.Data = body
	msg.Header.Set(jetstream.MsgIDHeader, "control:"+ev.Tenant+":"+offboard.Seq{Epoch: s.epoch, N: ev.Revision}.String())
	_, err = s.js.PublishMsg(ctx, msg)
	return err
}

// writeOrder is the order in which a pause or resume of both priorities
// writes their keys: bulk first. A pause cut short (NATS lost, a refused
// key, an interrupt) then has stopped the campaigns, the most calls,
// with only normal requests going on; a resume cut short has let the
// campaigns go on, as it was asked to, with normal requests still
// waiting. Pause and resume write in the same order, or two of them at
// once would each win one key's compare-and-swap and lose the other's,
// again and again, until put writes without the check and leaves a mix.
func writeOrder(prios []offboard.Priority) []offboard.Priority {
	backward := slices.Clone(prios)
	slices.Reverse(backward)
	return backward
}

// keyError is the error of a write of one key.
type keyError struct {
	key string
	err error
}

func (e *keyError) Error() string { return "write " + e.key + ": " + e.err.Error() }
func (e *keyError) Unwrap() error { return e.err }

// notAllWritten is the error of a pause or resume whose keys were not all
// written: which priorities it changed and which not, so that the
// operator knows what is in force. A write that got no answer (a timeout,
// an interrupt) may have been stored all the same: it says so.
func notAllWritten(c Change, keys []string, written map[string]uint64, err error) error {
	verb := "paused"
	if c.Action == ActionResume {
		verb = "resumed"
	}
	var failed *keyError
	unanswered := errors.As(err, &failed) && Unanswered(err) && !errors.As(err, new(refusedWrite))
	states := make([]string, 0, len(keys))
	for _, k := range keys {
		_, _, p, _ := ParseKey(k)
		switch {
		case written[k] != 0:
			states = append(states, fmt.Sprintf("%s %s", p, verb))
		case unanswered && failed.key == k:
			states = append(states, fmt.Sprintf("%s not known to be %s", p, verb))
		default:
			states = append(states, fmt.Sprintf("%s not %s", p, verb))
		}
	}
	if errors.As(err, new(refusedWrite)) {
		// Refused again, the same command finishes nothing.
		return fmt.Errorf("%s of %s failed: %s (%w); offboardctl status %s shows what is in force",
			c.Action, c.Tenant, strings.Join(states, ", "), err, c.Tenant)
	}
	return fmt.Errorf("%s of %s failed: %s (%w); offboardctl status %s shows what is in force, and the same %s again finishes it",
		c.Action, c.Tenant, strings.Join(states, ", "), err, c.Tenant, c.Action)
}

// budgetNotWritten is the error of a budget change whose write failed.
// A write that got no answer (a timeout, an interrupt: the stream's
// leader lost between its write and its reply) may have been stored: it
// says so, as notAllWritten does for a pause. Told only that the write
// ran out of time, the operator took the budget for unchanged.
func budgetNotWritten(c Change, err error) error {
	var failed *keyError
	if errors.As(err, new(refusedWrite)) {
		if c.Action == ActionBudgetClear {
			return fmt.Errorf("budget override of %s not cleared: its write was refused (%w)", c.Tenant, err)
		}
		return fmt.Errorf("budget of %s not set to %s: its write was refused (%w)", c.Tenant, c.Value, err)
	}
	if !errors.As(err, &failed) || !Unanswered(err) {
		return err
	}
	what := fmt.Sprintf("budget of %s not known to be set to %s", c.Tenant, c.Value)
	if c.Action == ActionBudgetClear {
		what = fmt.Sprintf("budget override of %s not known to be cleared", c.Tenant)
	}
	return fmt.Errorf("%s: its write got no answer, and may have been stored (%w); offboardctl status %s shows what is in force, and the same command again finishes it",
		what, err, c.Tenant)
}

// WriteRefused says whether NATS refused the connection nc the publish
// that writes key of the control bucket (a user without the
// permission): that write times out as one whose answer was lost does,
// but was not stored, and the same command again is refused again.
func WriteRefused(nc *nats.Conn, key string) bool {
	return queue.PublishRefused(nc, "$KV."+offboard.BucketControl+"."+key)
}

// refusedWrite is a write NATS refused (WriteRefused).
type refusedWrite struct{ err error }

func (e refusedWrite) Error() string { return e.err.Error() }
func (e refusedWrite) Unwrap() error { return e.err }

// Unanswered says whether a write failed for want of an answer (a
// timeout, an interrupt), not by the server's refusal: it may have been
// stored all the same.
func Unanswered(err error) bool {
	return errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) || errors.Is(err, nats.ErrTimeout)
}

// putTries is how many times put writes a change with compare-and-swap
// before it writes it without.
const putTries = 5

// put writes data under every key, each over the revision it had when
// read (compare-and-swap), and returns the keys it wrote, each with its
// revision. A change of two keys (a pause or resume of both
// priorities) that another change wrote in between is written again
// whole: two operators' changes at once leave one or the other in force,
// never a mix of both (normal paused, bulk resumed) that neither asked
// for.
func (s *Store) put(ctx context.Context, keys []string, data []byte) (map[string]uint64, error) {
	written := make(map[string]uint64, len(keys))
	for tries := 0; ; tries++ {
		revs := make([]uint64, len(keys))
		for i, k := range keys {
			e, err := s.kv.Get(ctx, k)
			switch {
			case errors.Is(err, jetstream.ErrKeyNotFound): // none, or deleted
			case err != nil:
				return written, fmt.Errorf("read %s: %w", k, err)
			default:
				revs[i] = e.Revision()
			}
		}
		var (
			rev uint64
			err error
		)
		for i, k := range keys {
			switch {
			case tries == putTries:
				// Others kept writing in between: the change is written
				// whole all the same, without a check, rather than given
				// up after some of its keys (in force, no audit event).
				rev, err = s.kv.Put(ctx, k, data)
			case revs[i] == 0:
				rev, err = s.kv.Create(ctx, k, data)
			default:
				rev, err = s.kv.Update(ctx, k, data, revs[i])
			}
			if err != nil {
				err = &keyError{key: k, err: err}
				break
			}
			written[k] = rev
			if s.wrote != nil {
				s.wrote(k)
			}
		}
		// Another change came between the read and the write: read again.
		if tries < putTries && (errors.Is(err, jetstream.ErrKeyExists) || queue.IsWrongLastSequence(err)) {
			continue
		}
		// Or it wrote a key this change had written already, before the
		// change's last key (a resume of bulk between the two writes of
		// a pause of both): the compare-and-swap of the keys after it
		// saw nothing, and bulk would stay resumed while this change's
		// event, of the higher revision, says paused.
		if err == nil && tries < putTries && s.writtenBetween(ctx, keys, written) {
			continue
		}
		return written, err
	}
}

// writtenBetween says whether another change wrote one of keys after put
// wrote it and before put wrote the last of them, and drops each such key
// from written: it is not this change's any more, should the next try be
// cut short. One that cannot be read now is left as written.
func (s *Store) writtenBetween(ctx context.Context, keys []string, written map[string]uint64) bool {
	last := written[keys[len(keys)-1]]
	between := false
	for _, k := range keys[:len(keys)-1] {
		e, err := s.kv.Get(ctx, k)
		if err == nil && e.Revision() != written[k] && e.Revision() < last {
			delete(written, k)
			between = true
		}
	}
	return between
}

// Load reads every control in force.
func (s *Store) Load(ctx context.Context) (*View, error) {
	return load(ctx, s.kv)
}

// load reads the bucket up to its end as it is now.
func load(ctx context.Context, kv jetstream.KeyValue) (*View, error) {
	v := &View{}
	err := queue.EachEntry(ctx, kv, func(e jetstream.KeyValueEntry) {
		_, _ = v.apply(e) // a key of no known form is not ours to judge here
	})
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", offboard.BucketControl, err)
	}
	return v, nil
}
