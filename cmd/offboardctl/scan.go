package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/contoso-secops/mde-offboard/internal/campaign"
	"github.com/contoso-secops/mde-offboard/internal/queue"
	"github.com/contoso-secops/mde-offboard/offboard"
)

// follower reads a stream's messages on a subject from the first, in
// order, and goes on with those stored later. caughtUp closes once every
// message stored when it started was handed over.
type follower struct {
	cc       jetstream.ConsumeContext
	caughtUp chan struct{}
	once     sync.Once

	// mu guards stopped: once stopped, fn is handed no more messages.
	mu      sync.Mutex
	stopped bool
}

// follow starts a follower of subject in stream, handing each message to fn
// (one at a time).
func follow(ctx context.Context, js jetstream.JetStream, stream, subject string, fn func(jetstream.Msg)) (*follower, error) {
	s, err := js.Stream(ctx, stream)
	if err != nil {
		return nil, fmt.Errorf("stream %s: %w", stream, err)
	}
	f := &follower{caughtUp: make(chan struct{})}
	last, err := lastOn(ctx, s, subject)
	if err != nil {
		return nil, err
	}
	if last == 0 {
		f.once.Do(func() { close(f.caughtUp) })
	}
	cons, err := s.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{FilterSubjects: []string{subject}})
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", subject, err)
	}
	f.cc, err = cons.Consume(func(m jetstream.Msg) {
		f.mu.Lock()
		defer f.mu.Unlock()
		if f.stopped {
			return
		}
		fn(m)
		if meta, err := m.Metadata(); err == nil && meta.Sequence.Stream >= last {
			f.once.Do(func() { close(f.caughtUp) })
		}
	}, jetstream.PullHeartbeat(followHeartbeat))
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", subject, err)
	}
	return f, nil
}

// followHeartbeat is how often the server holding a follower's reader
// says it is there; two missed, the reader is made again. The reader is
// one server's: on a cluster, that server lost while the connection to
// another holds, the library's 5 s left a campaign run's progress
// standing still, and its end waiting, about 10 s while the results
// were stored.
const followHeartbeat = time.Second

// wait blocks until the follower caught up or ctx ends.
func (f *follower) wait(ctx context.Context) error {
	select {
	case <-f.caughtUp:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("reading what is stored: %w", context.Cause(ctx))
	}
}

// stop hands fn no more messages and stops the read; it waits for the
// read to stop unless ctx ended (stopUnlessEnded).
func (f *follower) stop(ctx context.Context) {
	f.mu.Lock()
	f.stopped = true
	f.mu.Unlock()
	stopUnlessEnded(ctx, f.cc.Stop)
}

// stopUnlessEnded calls stop and waits for it to return, unless ctx ends
// first. The stop of a read or of a watch waits for the server: the
// read's while it is making its reader again (up to 10 s a try), the
// watch's for the delete of its consumer (5 s). A run interrupted, or
// whose --timeout ran out, on a server that stopped answering (frozen,
// partitioned: the connection stays open) ended that much later; left
// behind, the stop ends with the connection.
func stopUnlessEnded(ctx context.Context, stop func()) {
	done := make(chan struct{})
	go func() {
		defer close(done)
		stop()
	}()
	select {
	case <-done:
	case <-ctx.Done():
	}
}

// scan reads every message stored now on subject, in order, then stops:
// when the last one read says nothing is pending, or a fetch finds nothing
// and the stream holds no message on the subject after the last one read
// (on the request stream, messages leave as they are answered). A fetch
// that finds nothing on a slow or busy server does not end the scan while
// more is stored: a scan cut short would have campaign run publish rows
// again that still wait, and cancel find no campaign.
func scan(ctx context.Context, js jetstream.JetStream, stream, subject string, fn func(jetstream.Msg)) error {
	return scanWaiting(ctx, js, stream, subject, time.Time{}, scanWait, fn)
}

// scanWait is how long a fetch of scan waits for messages.
const scanWait = 300 * time.Millisecond

// scanWaiting is scan from the first message stored at or after since
// (zero: the first), with its first fetch waiting up to first for
// messages, the others scanWait.
func scanWaiting(ctx context.Context, js jetstream.JetStream, stream, subject string, since time.Time, first time.Duration, fn func(jetstream.Msg)) error {
	cfg := jetstream.OrderedConsumerConfig{FilterSubjects: []string{subject}}
	if !since.IsZero() {
		cfg.DeliverPolicy, cfg.OptStartTime = jetstream.DeliverByStartTimePolicy, &since
	}
	return scanWith(ctx, js, stream, subject, cfg, since, 0, first, 0, fn)
}

// scanFromSeq is scan from stream sequence seq on, of at most limit
// messages: a consumer's requests not handed out yet.
func scanFromSeq(ctx context.Context, js jetstream.JetStream, stream, subject string, seq, limit uint64, fn func(jetstream.Msg)) error {
	cfg := jetstream.OrderedConsumerConfig{FilterSubjects: []string{subject},
		DeliverPolicy: jetstream.DeliverByStartSequencePolicy, OptStartSeq: seq}
	return scanWith(ctx, js, stream, subject, cfg, time.Time{}, max(seq, 1)-1, scanWait, limit, fn)
}

// scanWith is scan through an ordered consumer of cfg, which reads
// subject from after stream sequence last, stored at or after since,
// handing over at most limit messages (0: no limit).
func scanWith(ctx context.Context, js jetstream.JetStream, stream, subject string, cfg jetstream.OrderedConsumerConfig,
	since time.Time, last uint64, first time.Duration, limit uint64, fn func(jetstream.Msg),
) error {
	cfg.MaxResetAttempts = scanResets
	cons, err := js.OrderedConsumer(ctx, stream, cfg)
	if err != nil {
		return fmt.Errorf("read %s: %w", subject, err)
	}
	read := uint64(0)
	var noResponders queue.NoResponders
	for wait := first; ; wait = scanWait {
		batch := 512
		if limit > 0 {
			batch = int(min(limit-read, 512)) //nolint:gosec // at most 512
		}
		msgs, err := fetch(ctx, cons, batch, wait)
		if err != nil {
			return fmt.Errorf("read %s: %w", subject, err)
		}
		n, done := 0, false
		for m := range msgs.Messages() {
			fn(m)
			n++
			if meta, err := m.Metadata(); err == nil {
				last = meta.Sequence.Stream
				done = meta.NumPending == 0
			}
			if done {
				// Every message stored is read: the fetch would wait out
				// its time for more that are not coming (300 ms a read;
				// status reads a journal per tenant).
				break
			}
		}
		read += uint64(n) //nolint:gosec // not negative
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("read %s: %w", subject, err)
		}
		if done || (limit > 0 && read >= limit) {
			return nil
		}
		if err := msgs.Error(); err != nil && !errors.Is(err, nats.ErrTimeout) {
			if n == 0 && noResponders.Again(ctx, err) {
				continue
			}
			return fmt.Errorf("read %s: %w", subject, err)
		}
		if n > 0 {
			noResponders.Answered()
			continue
		}
		more, err := storedAfter(ctx, js, stream, subject, last, since)
		if err != nil || !more {
			return err
		}
	}
}

// scanResets is how many times a fetch of scan tries to make its reader
// (an ordered consumer makes one for each fetch) before the scan fails:
// a server back within about 20 s (each try waits 10 s for an answer)
// is ridden out. nats.go tries for ever by default: with the server gone
// between two fetches, dead ls, status or campaign status waited for as
// long as it was away, minutes or for good.
const scanResets = 2

// fetch is cons.Fetch, ended by ctx: an interrupt (Ctrl-C, SIGTERM)
// ends a fetch that waits for its reader to be made, which does not
// look at ctx, at once.
func fetch(ctx context.Context, cons jetstream.Consumer, batch int, wait time.Duration) (jetstream.MessageBatch, error) {
	type fetched struct {
		msgs jetstream.MessageBatch
		err  error
	}
	done := make(chan fetched, 1)
	go func() {
		msgs, err := cons.Fetch(batch, jetstream.FetchMaxWait(wait))
		done <- fetched{msgs, err}
	}()
	select {
	case f := <-done:
		return f.msgs, f.err
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// storedAfter says whether the stream holds a message on subject after
// stream sequence seq, stored at or after since (zero: any).
func storedAfter(ctx context.Context, js jetstream.JetStream, stream, subject string, seq uint64, since time.Time) (bool, error) {
	s, err := js.Stream(ctx, stream)
	if err != nil {
		return false, fmt.Errorf("stream %s: %w", stream, err)
	}
	m, err := lastMsgOn(ctx, s, subject)
	return m != nil && m.Sequence > seq && !m.Time.Before(since), err
}

// lastOn is the stream sequence of the last message on subject in s, 0
// when it holds none.
func lastOn(ctx context.Context, s jetstream.Stream, subject string) (uint64, error) {
	m, err := lastMsgOn(ctx, s, subject)
	if m == nil {
		return 0, err
	}
	return m.Sequence, nil
}

// lastMsgOn is the last message on subject in s, nil when it holds none.
func lastMsgOn(ctx context.Context, s jetstream.Stream, subject string) (*jetstream.RawStreamMsg, error) {
	m, err := s.GetLastMsgForSubject(ctx, subject)
	switch {
	case errors.Is(err, jetstream.ErrMsgNotFound):
		return nil, nil
	case err != nil:
		return nil, fmt.Errorf("stream %s: last message on %s: %w", s.CachedInfo().Config.Name, subject, err)
	}
	return m, nil
}

// decodeResult reads a result message; false for anything else.
func decodeResult(m jetstream.Msg) (*offboard.Result, bool) {
	var r offboard.Result
	if json.Unmarshal(m.Data(), &r) != nil || r.RequestID == "" {
		return nil, false
	}
	return &r, true
}

// campaignRequests reads a campaign's requests still in the request stream
// (published, not yet answered), of both priorities, by their message ids:
// those whose request id is one of the campaign's rows (wave-000001 is
// campaign wave's, wave-2-000001 is not), with their attempt (a retry's
// message id ends in :<attempt>; 1 without).
func campaignRequests(ctx context.Context, js jetstream.JetStream, s offboard.Subjects, tenant, name string, fn func(p offboard.Priority, row, attempt int, m jetstream.Msg)) error {
	for _, p := range []offboard.Priority{offboard.Normal, offboard.Bulk} {
		err := scan(ctx, js, offboard.StreamRequests, s.Request(tenant, p), func(m jetstream.Msg) {
			id, attempt, ok := requestOfMsgID(tenant, m.Headers().Get(jetstream.MsgIDHeader))
			if row, isRow := campaign.RowOf(name, id); ok && isRow {
				fn(p, row, attempt, m)
			}
		})
		if err != nil {
			return err
		}
	}
	return nil
}

// requestOfMsgID reads a request message id of tenant's,
// <tenant>:<requestId>[:<attempt>] (offboard.RequestMsgID): the request id
// and the attempt it names, 1 when its suffix is none, not a number or
// not above 1.
func requestOfMsgID(tenant, msgID string) (id string, attempt int, ok bool) {
	id, ok = strings.CutPrefix(msgID, tenant+":")
	id, suffix, retry := strings.Cut(id, ":")
	attempt = 1
	if a, err := strconv.Atoi(suffix); retry && err == nil && a > 1 {
		attempt = a
	}
	return id, attempt, ok
}
