package queue

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"math/rand/v2"
	"slices"
	"sync"
	"time"

	"github.com/contoso-secops/mde-offboard/offboard"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Source hands out a tenant's requests one at a time, normal priority
// before bulk. It pulls a message only when asked, so requests that wait
// for quota stay in the stream: not in memory, not delivered and unacked.
//
// An idle source costs the server next to nothing: it pulls from a
// consumer only when that consumer may have a message for it (the Router
// saw a request published, or the consumer's last count or info said so).
// A safety poll covers a missed wake-up: every poll while requests are
// under way it pulls the consumers not known to hold a message; every
// IdlePoll, or up to a tenth sooner (idleEvery), it reads both consumers'
// counts (two consumer infos).
type Source struct {
	lanes [2]*lane // normal, then bulk
	wake  chan struct{}
	poll  time.Duration
	late  func(jetstream.MessageBatch) // takes over a pull given up on

	mu       sync.Mutex
	lastPoll time.Time // zero: look at the consumers first
	// counted is when the consumers' counts were last read from the
	// server (lastPoll also moves when a poll was not needed).
	counted time.Time
	// idle is how long after the counts an idle source looks again
	// (idleEvery), drawn anew at each count.
	idle time.Duration
	busy bool // requests under way or just published: poll soon
	// quiet says the last counts found nothing waiting or under way,
	// and since then the source has handed out no request and heard of
	// none published (idleAgain).
	quiet bool
}

// lane is one priority's consumer and what the source knows of it.
type lane struct {
	cons jetstream.Consumer
	prio offboard.Priority

	// Guarded by Source.mu.
	pending uint64 // undelivered messages, as last counted, plus those published since
	unacked uint64 // delivered messages not acked yet, as last counted
	maybe   bool   // a pull may find a message (undelivered, or a redelivery due)
	woken   bool   // a request was published since the last pull: wait a moment for it
	wakes   uint64 // wake-ups so far, so a pull knows whether one came meanwhile
	// published counts the requests the wake-ups said were published, so
	// that a pull knows how many came while it was under way.
	published uint64
}

// IdlePoll is how often, at most, an idle source looks at its consumers
// in case a wake-up was missed.
const IdlePoll = 30 * time.Second

// idleEvery is how long after reading its consumers' counts a source
// reads them again, at the latest: IdlePoll less up to a tenth, drawn at
// random. Sources made together (a worker's start) read their counts
// together; at the same interval they would go on doing so, every
// tenant's two consumer infos in one burst on the server's JetStream API
// queue, and in one burst of the worker's garbage, every IdlePoll. Drawn
// at each count, the reads spread over the last tenth of the interval.
func idleEvery() time.Duration {
	return IdlePoll - rand.N(IdlePoll/10)
}

// wakeWait is how long a pull after a wake-up waits for the message: the
// wake-up can come a moment before the stream has stored it.
const wakeWait = 250 * time.Millisecond

// Delivery is a request taken from the stream, with its priority.
type Delivery struct {
	Msg  jetstream.Msg
	Prio offboard.Priority
}

// Next returns the next request, blocking until one is published or ctx
// ends.
func (s *Source) Next(ctx context.Context) (jetstream.Msg, offboard.Priority, error) {
	return s.NextOf(ctx, offboard.Normal, offboard.Bulk)
}

// NextOf is Next over the given priorities only (those not paused),
// normal before bulk.
func (s *Source) NextOf(ctx context.Context, prios ...offboard.Priority) (jetstream.Msg, offboard.Priority, error) {
	ds, err := s.NextBatch(ctx, 1, prios...)
	if err != nil {
		return nil, "", err
	}
	return ds[0].Msg, ds[0].Prio, nil
}

// NextBatch returns at least one and at most limit requests of the given
// priorities, normal first and bulk only for the rest, blocking until one
// is published or ctx ends. It pulls them in one request per consumer, so
// a caller that may start limit calls pays one round trip for them, and
// never takes more than it asked for: the others stay in the stream.
func (s *Source) NextBatch(ctx context.Context, limit int, prios ...offboard.Priority) ([]Delivery, error) {
	return s.NextBatchWithin(ctx, limit, nil, prios...)
}

// Room bounds the requests a caller works on at once. Take waits until
// there is room for at least one and takes room for up to n; Give hands
// back room taken and not used.
type Room interface {
	Take(ctx context.Context, n int) (int, error)
	Give(n int)
}

// NextBatchWithin is NextBatch within room (nil: no bound): room for the
// requests is taken only once a request may be waiting, right before the
// pull, so a caller waiting for requests holds none, and a request
// pulled never waits for room. The caller gives back each returned
// request's room.
func (s *Source) NextBatchWithin(ctx context.Context, limit int, room Room, prios ...offboard.Priority) ([]Delivery, error) {
	return s.NextBatchUpTo(ctx, limit, limit, room, prios...)
}

// NextBatchUpTo is NextBatchWithin with at most bulkLimit bulk requests
// of the limit: a caller whose bulk requests may hold only some of its
// places still takes its normal ones in one pull.
func (s *Source) NextBatchUpTo(ctx context.Context, limit, bulkLimit int, room Room, prios ...offboard.Priority) ([]Delivery, error) {
	limit = max(limit, 1)
	for {
		poll := s.pollNeeded(time.Now(), prios)
		if poll == pollCounts {
			if err := s.refresh(ctx); err != nil {
				return nil, err
			}
		}
		out, err := s.pullWithin(ctx, limit, bulkLimit, room, prios)
		if err != nil || len(out) > 0 {
			return out, err
		}
		if poll == pollPulls && !s.mayHaveOther(prios) {
			// The poll's pulls found nothing: the counts say whether
			// the tenant still has requests under way (one may come
			// back) or is idle now, and polls every IdlePoll. A lane
			// not asked for that may hold requests (bulk, while the
			// tenant's bulk requests hold their places, or paused)
			// says the tenant is busy: read, the counts would only
			// cost the server two consumer infos at every poll. A
			// tenant with nothing under way is idle again without
			// them (idleAgain).
			if s.idleAgain() {
				continue
			}
			if err := s.refresh(ctx); err != nil {
				return nil, err
			}
			continue
		}
		t := time.NewTimer(s.untilPoll(time.Now()))
		select {
		case <-ctx.Done():
			t.Stop()
			return nil, ctx.Err()
		case <-s.wake:
		case <-t.C:
		}
		t.Stop()
	}
}

// NextBatchNow is NextBatchWithin without the wait: the requests of the
// given priorities there are now, none when there are none. It pulls from
// each lane asked for, whatever the source knows of it: it is for a rare
// look (a campaign's cancel) that must not miss a request waiting.
func (s *Source) NextBatchNow(ctx context.Context, limit int, room Room, prios ...offboard.Priority) ([]Delivery, error) {
	s.mu.Lock()
	for _, l := range s.lanes {
		if slices.Contains(prios, l.prio) {
			l.maybe = true
		}
	}
	s.mu.Unlock()
	return s.pullWithin(ctx, max(limit, 1), max(limit, 1), room, prios)
}

// Returned says that a request of priority p this source handed out went
// back to the stream at once (a nak without delay): its lane has a
// request to hand out again, whatever a pull since found.
func (s *Source) Returned(p offboard.Priority) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.lanes[laneOf(p)].maybe = true
}

// pullWithin pulls up to limit requests from the lanes that may have
// some, normal first, within room; bulk ones up to bulkLimit.
func (s *Source) pullWithin(ctx context.Context, limit, bulkLimit int, room Room, prios []offboard.Priority) ([]Delivery, error) {
	if !s.mayHave(prios) {
		return nil, nil
	}
	if room != nil {
		took, err := room.Take(ctx, limit)
		if err != nil {
			return nil, err
		}
		limit = took
	}
	var out []Delivery
	defer func() {
		if room != nil {
			room.Give(limit - len(out))
		}
	}()
	for _, l := range s.lanes {
		if len(out) == limit {
			break
		}
		if !slices.Contains(prios, l.prio) {
			continue
		}
		want := limit - len(out)
		if l.prio == offboard.Bulk {
			want = min(want, bulkLimit)
		}
		if want <= 0 {
			continue
		}
		msgs, err := s.pull(ctx, l, want)
		for _, m := range msgs {
			out = append(out, Delivery{Msg: m, Prio: l.prio})
		}
		if err != nil {
			if len(out) > 0 {
				return out, nil // the error comes back with the next pull
			}
			return nil, err
		}
	}
	return out, nil
}

// mayHave says whether a lane of the given priorities may hold a request.
func (s *Source) mayHave(prios []offboard.Priority) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, l := range s.lanes {
		if l.maybe && slices.Contains(prios, l.prio) {
			return true
		}
	}
	return false
}

// mayHaveOther says whether a lane not of the given priorities may hold
// a request.
func (s *Source) mayHaveOther(prios []offboard.Priority) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, l := range s.lanes {
		if l.maybe && !slices.Contains(prios, l.prio) {
			return true
		}
	}
	return false
}

// pollDue says whether the safety poll is due at now.
func (s *Source) pollDue(now time.Time) bool { return s.untilPoll(now) <= 0 }

func (s *Source) untilPoll(now time.Time) time.Duration {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.lastPoll.IsZero() {
		return 0
	}
	counts := s.counted.Add(s.idle).Sub(now)
	if s.busy {
		// The counts are due at the time drawn for them, not at the
		// first poll after it: polls every 2 s from one count would put
		// the next at 28 or 30 s, and busy tenants counted together
		// would count together again.
		return min(s.lastPoll.Add(s.poll).Sub(now), counts)
	}
	return counts
}

// idleAgain makes a busy source idle again, without reading the counts,
// when its poll's pulls found nothing and nothing can be under way: its
// last counts found no request waiting or delivered and not acked, and
// since then it has handed out none and heard of none published. Only a
// look made it busy: every source's look after dropped wake-ups
// (lookAfterDrop), where reading the counts had every tenant send two
// consumer infos at once, 2000 from a thousand tenants at each look, and
// count together again from then on. (A request heard of and not found
// may be under way at another replica: the counts say so, and the
// source polls until it is answered or comes back.) Its next counts
// stay where they were due.
func (s *Source) idleAgain() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.quiet {
		return false
	}
	s.busy = false
	return true
}

// A safety poll, when one is due, reads the consumers' counts or pulls.
type pollKind int

const (
	pollNone   pollKind = iota // not due
	pollCounts                 // read the counts
	pollPulls                  // pull the lanes; read the counts if they are empty
)

// pollNeeded says what the safety poll does now. It reads the counts only
// every IdlePoll, or when its pulls find nothing: in between, a poll due
// while the tenant is busy marks every lane asked for as one that may
// have a message, and the pull that follows looks. A pull goes to the
// consumer itself; a count is a JetStream API request, and those share one
// queue on the server: a count every poll from each of a thousand busy
// tenants made it the server's busiest API and, with two replicas, timed
// out. The counts are always read once first.
func (s *Source) pollNeeded(now time.Time, prios []offboard.Priority) pollKind {
	if !s.pollDue(now) {
		return pollNone
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.counted.IsZero() || now.Sub(s.counted) >= s.idle {
		return pollCounts
	}
	for _, l := range s.lanes {
		if slices.Contains(prios, l.prio) {
			l.maybe = true
		}
	}
	s.lastPoll = now
	return pollPulls
}

// refresh reads both consumers' counts: the safety poll.
func (s *Source) refresh(ctx context.Context) error {
	var infos [2]*jetstream.ConsumerInfo
	ctx, cancel := StepCtx(ctx)
	defer cancel()
	for i, l := range s.lanes {
		info, err := l.cons.Info(ctx)
		if err != nil {
			return fmt.Errorf("consumer info: %w", err)
		}
		infos[i] = info
	}
	s.counts(infos, time.Now())
	return nil
}

// counts records the consumers' counts, read at the given time.
func (s *Source) counts(infos [2]*jetstream.ConsumerInfo, at time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.lastPoll = at
	s.counted = at
	s.idle = idleEvery()
	s.busy = false
	for i, l := range s.lanes {
		l.pending = infos[i].NumPending
		l.unacked = uint64(max(infos[i].NumAckPending, 0)) //nolint:gosec // not negative
		// A delivered message not acked yet may come back (a nak, an
		// ack wait run out): look for it at every poll until it is gone.
		l.maybe = l.maybe || infos[i].NumPending > 0 || infos[i].NumAckPending > 0
		s.busy = s.busy || infos[i].NumPending > 0 || infos[i].NumAckPending > 0
	}
	s.quiet = !s.busy
}

// pull fetches up to n messages from the lane if it may have any. After a
// wake-up it waits a moment for one, if none was there yet: the wake-up
// can come before the stream stored its request. A pull that ended in an
// error returns the messages that came before it, with the error: they
// are delivered, and dropped they would wait out their ack wait.
func (s *Source) pull(ctx context.Context, l *lane, n int) ([]jetstream.Msg, error) {
	s.mu.Lock()
	if !l.maybe {
		s.mu.Unlock()
		return nil, nil
	}
	wakes, woken, published := l.wakes, l.woken, l.published
	l.woken = false
	s.mu.Unlock()
	msgs, err := fetchUpTo(ctx, l.cons, n, 0, s.late)
	if err == nil && len(msgs) == 0 && woken {
		msgs, err = fetchUpTo(ctx, l.cons, 1, wakeWait, s.late)
	}
	if err != nil && len(msgs) == 0 {
		return nil, Missing(ctx, l.cons, err)
	}
	sourcePulled()
	s.mu.Lock()
	defer s.mu.Unlock()
	switch {
	case len(msgs) > 0:
		s.busy, s.quiet = true, false // under way now
		if meta, merr := msgs[len(msgs)-1].Metadata(); merr == nil {
			// The count as the last message was delivered, and the
			// requests published since, as their wake-ups said: one
			// published while the pull was under way is not in the
			// count. (Some may be in both: a count too high only has the
			// stats loop ask the server, a count of 0 would hide them.)
			l.pending = meta.NumPending + (l.published - published)
		}
		// A full batch: there may be more (a redelivery does not show in
		// the count). A short one emptied the lane, unless a request was
		// published meanwhile, the one woken for is not stored yet, or
		// the pull was cut short by an error.
		if len(msgs) < n && l.wakes == wakes && !woken && err == nil {
			l.pending, l.maybe = 0, false
		}
	case l.wakes == wakes:
		l.pending, l.maybe = 0, false
		if woken {
			s.busy = true // its message may not have been stored yet
		}
	}
	return msgs, err
}

// Missing is a pull's error, said as the consumer's absence when it is
// gone: a pull from a consumer that does not exist gets no answer but the
// client's "no responders", which is also what a consumer without a leader
// answers for a moment. Its info tells the two apart; the tenant's loop
// has a missing consumer made again at once, and so does the drain of the
// unrouted consumer. The info is waited for only
// missingCheck: one asked while the consumer elects its leader may get no
// answer, and must not hold the tenant's next pull for a whole step.
func Missing(ctx context.Context, c jetstream.Consumer, err error) error {
	if !errors.Is(err, nats.ErrNoResponders) {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, missingCheck)
	defer cancel()
	if _, infoErr := c.Info(ctx); errors.Is(infoErr, jetstream.ErrConsumerNotFound) {
		return fmt.Errorf("%w: %w", err, infoErr)
	}
	return err
}

// missingCheck bounds the look at a consumer whose pull had no responders.
const missingCheck = 500 * time.Millisecond

// laneOf is the index of priority p's lane.
func laneOf(p offboard.Priority) int {
	if p == offboard.Bulk {
		return 1
	}
	return 0
}

// Consumer returns the source's consumer of priority p, for those who read
// its info (counts, sweeps) without a handle of their own: each handle
// keeps the consumer's last info, about a kilobyte.
func (s *Source) Consumer(p offboard.Priority) jetstream.Consumer {
	return s.lanes[laneOf(p)].cons
}

// woken notes that n requests of priority p were published.
func (s *Source) woken(p offboard.Priority, n uint64) {
	l := s.lanes[laneOf(p)]
	s.mu.Lock()
	l.pending += n
	l.published += n
	l.maybe, l.woken = true, true
	l.wakes++
	if n > 0 {
		s.quiet = false
	}
	s.mu.Unlock()
	select {
	case s.wake <- struct{}{}:
	default: // already awake
	}
}

// fetchUpTo pulls at most n messages, waiting up to wait for the first
// (0: no wait). A pull it gives up on (no answer in time) goes to late:
// its messages may still come.
func fetchUpTo(ctx context.Context, c jetstream.Consumer, n int, wait time.Duration, late func(jetstream.MessageBatch)) ([]jetstream.Msg, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	var batch jetstream.MessageBatch
	var err error
	if wait > 0 {
		batch, err = c.Fetch(n, jetstream.FetchMaxWait(wait))
	} else {
		batch, err = c.FetchNoWait(n)
	}
	if err != nil {
		return nil, fmt.Errorf("fetch: %w", err)
	}
	// A no-wait pull has no timer of its own: if its answer never came,
	// ranging over the batch would stall the tenant for good.
	guard := time.NewTimer(wait + fetchGuard)
	defer guard.Stop()
	var msgs []jetstream.Msg
	for {
		select {
		case m, ok := <-batch.Messages():
			if ok {
				msgs = append(msgs, m)
				continue
			}
		case <-guard.C:
			late(batch)
			if len(msgs) > 0 {
				return msgs, nil // the rest, if any, goes to late
			}
			return nil, fmt.Errorf("fetch: no answer from the server in %v", wait+fetchGuard)
			// Not on ctx: the server may have delivered the message
			// already, and one dropped here would wait out its ack wait.
		}
		break
	}
	if err := batch.Error(); err != nil && !errors.Is(err, nats.ErrTimeout) && !errors.Is(err, jetstream.ErrNoMessages) {
		return msgs, fmt.Errorf("fetch: %w", err)
	}
	return msgs, nil
}

// fetchGuard bounds the wait for the answer to a no-wait pull. A pull
// sent while the consumer has no leader (a cluster node lost) gets none:
// the tenant's loop tries again after it.
const fetchGuard = StepTimeout

// Router wakes a tenant's Source when a request is published for it. It
// listens on the request subjects with a plain subscription, which costs
// the server nothing beyond a copy of each publish.
type Router struct {
	subjects offboard.Subjects
	sub      *nats.Subscription
	late     sync.WaitGroup // pulls given up on, still read
	closed   chan struct{}
	// missed is signalled when the connection dropped wake-ups (a slow
	// consumer); lookout, its reader, has every source look again.
	missed  chan struct{}
	dropped int // the subscription's drops so far, as last looked at (handler only)
	lookout sync.WaitGroup
	// looks counts lookOut's looks (under mu): a source made while one
	// took its sources looks itself (Source).
	looks int

	mu      sync.Mutex
	sources map[string]*Source
	// early counts the wake-ups, by priority, of the tenants expected and
	// of those whose source is being made, until their source is there:
	// the stream may store a request after the consumers' counts were
	// read, though the router heard of it before.
	early map[string]*[2]uint64
}

// NewRouter subscribes to the request subjects. The wake-ups of the
// tenants expected that come before their source is made are kept for it.
func NewRouter(nc *nats.Conn, s offboard.Subjects, expected ...string) (*Router, error) {
	r := &Router{subjects: s, sources: map[string]*Source{}, early: map[string]*[2]uint64{}, closed: make(chan struct{}),
		missed: make(chan struct{}, 1)}
	for _, t := range expected {
		r.early[t] = new([2]uint64)
	}
	sub, err := nc.Subscribe(s.AllRequests(), func(m *nats.Msg) {
		r.heard(m.Subject)
		r.checkDropped(m.Sub)
	})
	if err != nil {
		return nil, fmt.Errorf("subscribe %s: %w", s.AllRequests(), err)
	}
	r.sub = sub
	r.lookout.Go(r.lookOut)
	return r, nil
}

// heard wakes the source of the tenant a request was published for.
func (r *Router) heard(subject string) {
	tenant, p, ok := r.subjects.ParseRequest(subject)
	if !ok {
		return
	}
	r.mu.Lock()
	src := r.sources[tenant]
	if early := r.early[tenant]; src == nil && early != nil {
		early[laneOf(p)]++
	}
	r.mu.Unlock()
	if src != nil {
		src.woken(p, 1)
	}
}

// checkDropped signals missed when the connection dropped messages of the
// subscription since the handler last looked (a slow consumer: the
// handler held up, a burst of large requests). A drop happens only while
// messages wait for the handler, so the handler always runs again after
// the last one and sees it. Which tenants' wake-ups were lost is not
// known: every source looks (lookOut), where an idle tenant's request
// would otherwise wait for the next safety poll, up to IdlePoll.
func (r *Router) checkDropped(sub *nats.Subscription) {
	n, err := sub.Dropped()
	if err != nil || n <= r.dropped {
		return
	}
	r.dropped = n
	select {
	case r.missed <- struct{}{}:
	default: // a look is due already
	}
}

// lookoutEvery bounds how often dropped wake-ups have every source look.
// Each look is a pull and, if empty, a waiting pull (wakeWait) of both
// lanes of every source: looking at each drop, a router that stays just
// behind its publishers had every idle tenant pull without a pause, eight
// pulls a second each, 8,000 a second from a thousand tenants, on the
// server it fell behind on. A wake-up dropped while a look was just made
// waits for the next, at most lookoutEvery, not IdlePoll.
const lookoutEvery = 5 * time.Second

// lookOut has every source look at its consumers when wake-ups were
// dropped, at most once per lookoutEvery, apart from the handler, which
// must not fall further behind.
func (r *Router) lookOut() {
	var last time.Time
	for {
		select {
		case <-r.closed:
			return
		case <-r.missed:
		}
		if wait := lookoutEvery - time.Since(last); !last.IsZero() && wait > 0 {
			t := time.NewTimer(wait)
			select {
			case <-r.closed:
				t.Stop()
				return
			case <-t.C:
			}
		}
		last = time.Now()
		r.mu.Lock()
		r.looks++
		srcs := slices.Collect(maps.Values(r.sources))
		r.mu.Unlock()
		for _, src := range srcs {
			src.lookAfterDrop()
		}
		lookedOut()
	}
}

// lookAfterDrop has the source look as after a wake-up of each lane: the
// request whose wake-up was dropped may not be stored yet.
func (s *Source) lookAfterDrop() {
	s.woken(offboard.Normal, 0)
	s.woken(offboard.Bulk, 0)
}

// lookedOut is called as lookOut has had every source look: a test
// waits for it.
var lookedOut = func() {}

// Source returns the tenant's source; poll bounds how long a missed wake-up
// can delay a request while the tenant has requests under way (IdlePoll
// otherwise).
//
// Its first counts are those the server sent with the consumers, and the
// requests published since: a source made for each of a thousand tenants
// at start asks the server nothing more before its first pull.
func (r *Router) Source(ctx context.Context, js jetstream.JetStream, tenant string, poll time.Duration) (*Source, error) {
	r.mu.Lock()
	if r.early[tenant] == nil {
		r.early[tenant] = new([2]uint64)
	}
	looks := r.looks
	r.mu.Unlock()
	normal, err := js.Consumer(ctx, offboard.StreamRequests, ConsumerName(tenant, offboard.Normal))
	if err != nil {
		return nil, fmt.Errorf("consumer %s: %w", ConsumerName(tenant, offboard.Normal), err)
	}
	bulk, err := js.Consumer(ctx, offboard.StreamRequests, ConsumerName(tenant, offboard.Bulk))
	if err != nil {
		return nil, fmt.Errorf("consumer %s: %w", ConsumerName(tenant, offboard.Bulk), err)
	}
	src := &Source{
		lanes: [2]*lane{{cons: normal, prio: offboard.Normal}, {cons: bulk, prio: offboard.Bulk}},
		wake:  make(chan struct{}, 1), poll: poll, late: r.nakLate,
	}
	src.counts([2]*jetstream.ConsumerInfo{normal.CachedInfo(), bulk.CachedInfo()}, time.Now())
	sourceCounted(tenant)
	r.mu.Lock()
	early := r.early[tenant]
	delete(r.early, tenant)
	r.sources[tenant] = src
	// A look after dropped wake-ups (lookOut) made since the counts
	// were asked for did not see this source: its request published
	// after the counts were read, its wake-up dropped, would wait for
	// the idle poll.
	missed := r.looks != looks
	r.mu.Unlock()
	for i, l := range src.lanes {
		if early[i] > 0 {
			src.woken(l.prio, early[i])
		}
	}
	if missed {
		src.lookAfterDrop()
	}
	return src, nil
}

// Reconnected has every source pull from its consumers at once: the
// requests published while the connection to NATS was away (a replica
// cut off, a server restarted) woke nobody, and an idle tenant would
// find them only at its next safety poll, up to IdlePoll later. A pull
// goes to the consumer itself, not to the server's shared API queue, and
// one that finds nothing leaves the lane idle again.
func (r *Router) Reconnected() {
	r.mu.Lock()
	srcs := slices.Collect(maps.Values(r.sources))
	r.mu.Unlock()
	for _, s := range srcs {
		s.lookAgain()
	}
}

// lookAgain marks every lane as one that may hold a request, and wakes
// the source.
func (s *Source) lookAgain() {
	s.mu.Lock()
	for _, l := range s.lanes {
		l.maybe = true
	}
	s.mu.Unlock()
	select {
	case s.wake <- struct{}{}:
	default: // already awake
	}
}

// sourceCounted is called as a source has its first counts, before it
// takes its wake-ups: a test publishes there.
var sourceCounted = func(string) {}

// sourcePulled is called as a pull has its messages, before the source
// counts what is left: a test publishes there.
var sourcePulled = func() {}

// Close stops the subscription, the reading of pulls given up on and the
// look after dropped wake-ups.
func (r *Router) Close() error {
	close(r.closed)
	r.late.Wait()
	r.lookout.Wait()
	return r.sub.Unsubscribe()
}

// lateWait is how long a pull given up on is still read.
const lateWait = 30 * time.Second

// nakLate reads a pull its source gave up on (a leader election or a
// fail-over held its answer back, or the tenant's loop let go of it) and
// naks what still comes: delivered to nobody, a request would otherwise
// wait for its ack wait.
func (r *Router) nakLate(batch jetstream.MessageBatch) {
	r.late.Go(func() {
		t := time.NewTimer(lateWait)
		defer t.Stop()
		for {
			select {
			case m, ok := <-batch.Messages():
				if !ok {
					return
				}
				_ = m.Nak() // unanswered, it still comes back after its ack wait
			case <-t.C:
				return
			case <-r.closed:
				return
			}
		}
	})
}

// Backlog reports how many requests of each priority wait in the stream
// for this tenant (not yet delivered). It answers from what the source
// last learnt (its pulls, its safety poll, the requests published since)
// and asks the server only when that is older than IdlePoll, so reading it
// costs an idle tenant nothing more.
func (s *Source) Backlog(ctx context.Context) (normal, bulk uint64, err error) {
	if s.untilStale(time.Now()) <= 0 {
		if err := s.refresh(ctx); err != nil {
			return 0, 0, err
		}
		select {
		case s.wake <- struct{}{}: // Next acts on what it found
		default:
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.lanes[0].pending, s.lanes[1].pending, nil
}

// Unacked reports how many requests of priority p the consumer had
// delivered and not had acked when the source last counted (Backlog
// counts anew when that is older than IdlePoll): requests under way, and
// those handed back for a redelivery later.
func (s *Source) Unacked(p offboard.Priority) uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.lanes[laneOf(p)].unacked
}

func (s *Source) untilStale(now time.Time) time.Duration {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.counted.IsZero() {
		return 0
	}
	return s.counted.Add(IdlePoll).Sub(now)
}
