package worker

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jonboulle/clockwork"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/zap"
	"golang.org/x/sync/errgroup"

	"github.com/contoso-secops/mde-offboard/internal/campaign"
	"github.com/contoso-secops/mde-offboard/internal/config"
	"github.com/contoso-secops/mde-offboard/internal/limiter"
	"github.com/contoso-secops/mde-offboard/internal/mde"
	"github.com/contoso-secops/mde-offboard/internal/queue"
	"github.com/contoso-secops/mde-offboard/offboard"
)

// Options configure a Worker.
type Options struct {
	JS       jetstream.JetStream
	Settings queue.Settings
	Ledger   *queue.Ledger
	Router   *queue.Router
	Logger   *zap.Logger
	Metrics  *Metrics
	Clock    clockwork.Clock
	Retry    RetryPolicy
	// Seed seeds the backoff's jitter (0: from the clock).
	Seed uint64
	// Poll bounds how long a request can wait when its wake-up was missed.
	Poll time.Duration
	// CallingLease is how long a request id whose call is under way blocks
	// another message with the same id, or another process's delivery of
	// the same message (default 2h: longer than any call with its backoffs
	// and 429 pauses).
	CallingLease time.Duration
	// ActionShowsWithin is how long after its call a new action may take
	// to show in the device's list of actions (default a minute). Until
	// then a call that may have gone out before this delivery (the
	// ledger's "calling" entry) keeps a cancel from applying, and keeps a
	// guard's refusal from being the answer: the request is taken again
	// to look for the action.
	ActionShowsWithin time.Duration
	// StatsEvery is how often backlog and quota gauges are refreshed.
	StatsEvery time.Duration
	// SweepEvery is how often the stats loop looks, for each tenant, for
	// answered requests left in the request stream (queue.Sweep); the
	// tenants are spread over that time, and a tenant whose sweep left
	// more than it may remove is swept again at the next StatsEvery.
	// Default 10 minutes.
	SweepEvery time.Duration
	// Shared, when set, keeps every tenant's quota in the journal all
	// replicas share; nil keeps it in this process.
	Shared *limiter.Shared
	// Stale names tenant consumers left from an earlier configuration
	// (queue.Ensure, queue.Stale): their requests are answered
	// unknown_tenant.
	Stale []string
	// Presence says which tenants other live replicas serve; nil: this
	// worker answers unknown_tenant for every tenant it does not configure.
	Presence Presence
	// Assignment says which of the configured tenants this replica works
	// now (queue.Presence); nil: all of them.
	Assignment Assignment
	// Control holds the operators' pauses; nil: nothing is ever paused.
	Control Control
	// Budget, when set, counts every tenant's created actions in the
	// budget journal all replicas share (budget.go); nil counts them in
	// this process.
	Budget *limiter.Shared
	// BudgetHorizon is the longest budget window the journal can count
	// (its history less the reservation lease and the margin); a longer
	// override is not applied. Zero: 24h. Negative: the journal keeps too
	// short a history to count any window, and no override is applied.
	BudgetHorizon time.Duration
	// MaxRequests bounds the requests this worker works on at once, over
	// all its tenants (0: no bound). Each tenant also has its maxInFlight;
	// with many busy tenants this bound keeps the worker's memory, and
	// the load it puts on NATS, in hand. A request waiting for quota,
	// budget, a backoff or its device does not count meanwhile, so that a
	// tenant held up never holds up the others: when many wait so (an API
	// outage), more requests than this are pulled, up to twice each
	// tenant's maxInFlight.
	MaxRequests int
	// Plan tunes the answers to campaign plan requests.
	Plan PlanOptions
	// ConsumerLost, when set, is told each time a tenant's fetch finds
	// its consumer missing (a lone NATS server restarted: the consumers
	// keep their state in memory). It must not block.
	ConsumerLost func()
	// StoreRefusedHint says what an operator does about err, NATS
	// refusing to store a request's step for a limit (queue.StoreRefused);
	// nil: queue.StoreRefusedHint. The app adds where its embedded server
	// stores.
	StoreRefusedHint func(err error) string
}

// Tenant is a configured tenant with its API client.
type Tenant struct {
	Config *config.Tenant
	Client *mde.Client
	Cred   *mde.Credential
}

type tenantRun struct {
	*Tenant
	name     string
	limits   *limiter.Tenant
	source   *queue.Source
	devices  keyedMutex
	created  createdActions // the actions this process answered created
	uncalled leftUncalled   // the requests this process left with no call sent
	working  sync.Map       // the requests being handled, by workKey
	// goneSaid is when the fetch last logged the tenant's consumer
	// missing (the fetch loop's own).
	goneSaid time.Time
	tracker  *tracker
	gate     *gate // open while the tenant is assigned to this replica
	budget   *budget
	log      *zap.Logger
	backlog  map[offboard.Priority]uint64 // waiting, not delivered: last read by runStats
	unacked  map[offboard.Priority]uint64 // delivered, not acked: last read by runStats
	swept    time.Time                    // last sweep that left nothing (runStats)
	// sweepTried is when runStats last began a sweep of the tenant: the
	// due tenant tried longest ago is swept first.
	sweepTried time.Time
	cancels    *cancels // its campaigns' cancels as they land
	// landed ends when a cancel of one of the tenant's campaigns lands
	// after the loop last took requests for one; withdrawing says that
	// the loop takes requests for a cancel (both the fetch loop's own).
	landed      context.Context
	withdrawing bool
	// readBehind is, for each priority, the cancel (landed) for which a
	// pass last had its lane read past the requests it set aside (the
	// fetch loop's own); behind runs those reads.
	readBehind map[offboard.Priority]context.Context
	behind     behindReads
	// repeats bounds the tenant's lines that can come once per request
	// and attempt.
	repeats *repeats
}

// Worker processes the requests of all configured tenants.
type Worker struct {
	opts    Options
	log     *zap.Logger
	m       *Metrics
	clock   clockwork.Clock
	caller  *caller
	planner *planner
	tenants map[string]*tenantRun
	unknown jetstream.Consumer
	staleMu sync.RWMutex
	stale   map[string][]jetstream.Consumer // by tenant token: consumers of tenants not configured here (staleMu)
	// lookForStale asks runFindStale to look now (LookForStale).
	lookForStale chan struct{}
	// workingSub answers other processes' questions (serveWorking).
	workingSub *nats.Subscription
	epoch      streamEpoch // of the request stream (offboard.Seq, epochOf)

	requests jetstream.Stream // the request stream: deletes, sweeps, the stats loop
	capacity capacity         // one per request worked on (Options.MaxRequests); nil: no bound
	pauses   pauseWatches     // the tenant loops' waits for requests (untilPaused)
	// behindSlots bounds the tenants' reads past a cancel's pass under
	// way at once (behindReadsAtOnce).
	behindSlots chan struct{}

	// campaigns knows which campaigns are cancelled (package campaign).
	campaigns *campaign.Watcher

	statsKick chan struct{} // refreshes the gauges now (a budget ran out)
	stopFetch context.CancelFunc
	stopWork  context.CancelFunc
	fetchers  sync.WaitGroup // tenant loops, unrouted loop, stats loop
	handlers  sync.WaitGroup // requests being worked on
	begun     atomic.Int64   // how many were ever started: a stop that cancels them says how many
	ended     atomic.Int64   // how many of them are over: those over before a stop cancels are not counted
	stopOnce  sync.Once
	stopErr   error
	// counted, when set, runs once a stop whose time ran out has read
	// which requests are over, before it cancels the others: a test's
	// seam for a request that starts meanwhile.
	counted func()
}

func (o Options) withDefaults() Options {
	if o.Clock == nil {
		o.Clock = clockwork.NewRealClock()
	}
	if o.Poll <= 0 {
		o.Poll = 2 * time.Second
	}
	o.Settings = o.Settings.WithDefaults()
	if o.CallingLease <= 0 {
		// Longer than any call can take with its backoffs and 429 pauses
		// (the in-progress ticks keep it from being redelivered meanwhile).
		o.CallingLease = 2 * time.Hour
	}
	if o.ActionShowsWithin <= 0 {
		o.ActionShowsWithin = time.Minute
	}
	if o.StoreRefusedHint == nil {
		o.StoreRefusedHint = func(error) string { return queue.StoreRefusedHint }
	}
	if o.StatsEvery <= 0 {
		o.StatsEvery = 15 * time.Second
	}
	if o.SweepEvery <= 0 {
		o.SweepEvery = 10 * time.Minute
	}
	if o.Presence == nil {
		o.Presence = servesNone{}
	}
	if o.Assignment == nil {
		o.Assignment = everyTenant{}
	}
	if o.Control == nil {
		o.Control = noControl{}
	}
	if o.Seed == 0 {
		o.Seed = uint64(o.Clock.Now().UnixNano())
	}
	if o.BudgetHorizon == 0 {
		o.BudgetHorizon = 24 * time.Hour
	}
	return o
}

// New prepares a worker for the given tenants. The streams and consumers
// must exist (queue.Ensure).
func New(ctx context.Context, opts Options, tenants []*Tenant) (*Worker, error) {
	opts = opts.withDefaults()
	w := &Worker{
		opts: opts, log: opts.Logger.Named("worker"), m: opts.Metrics, clock: opts.Clock,
		tenants: map[string]*tenantRun{}, statsKick: make(chan struct{}, 1), lookForStale: make(chan struct{}, 1),
		caller: newCaller(opts.Clock, opts.Metrics, opts.Retry, opts.Seed),
	}
	if opts.MaxRequests > 0 {
		w.capacity = make(capacity, opts.MaxRequests)
	}
	sources, err := w.sources(ctx, tenants)
	if err != nil {
		return nil, err
	}
	for i, t := range tenants {
		w.addTenant(t, sources[i])
		// Sweeps spread over SweepEvery, the first ones soon after start.
		w.tenants[t.Config.Name].swept = w.clock.Now().Add(-opts.SweepEvery * time.Duration(i+1) / time.Duration(len(tenants)+1))
	}
	unknown, err := opts.JS.Consumer(ctx, offboard.StreamRequests, queue.ConsumerUnrouted)
	if err != nil {
		return nil, fmt.Errorf("consumer %s: %w", queue.ConsumerUnrouted, err)
	}
	w.unknown = unknown
	w.stale = map[string][]jetstream.Consumer{}
	for _, name := range opts.Stale {
		cons, err := opts.JS.Consumer(ctx, offboard.StreamRequests, name)
		if err != nil {
			return nil, fmt.Errorf("consumer %s: %w", name, err)
		}
		w.addStale(cons)
	}
	stream, err := opts.JS.Stream(ctx, offboard.StreamRequests)
	if err != nil {
		return nil, fmt.Errorf("stream %s: %w", offboard.StreamRequests, err)
	}
	w.epoch.created, w.epoch.seen = stream.CachedInfo().Created, stream.CachedInfo().TimeStamp
	w.requests = stream
	w.behindSlots = make(chan struct{}, behindReadsAtOnce)
	if w.campaigns, err = campaign.NewWatcher(ctx, opts.JS, w.cancelLanded); err != nil {
		return nil, err
	}
	w.planner = newPlanner(w, opts.Plan)
	return w, nil
}

// sources makes the tenants' sources, a few at a time: each looks up its
// two consumers, and one by one a thousand tenants took seconds. The first
// failure stops the rest: with NATS not answering, each lookup would
// otherwise wait out its own timeout.
func (w *Worker) sources(ctx context.Context, tenants []*Tenant) ([]*queue.Source, error) {
	out := make([]*queue.Source, len(tenants))
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(16)
	for i, t := range tenants {
		if gctx.Err() != nil {
			break
		}
		g.Go(func() error {
			var err error
			out[i], err = w.opts.Router.Source(gctx, w.opts.JS, t.Config.Name, w.opts.Poll)
			return err
		})
	}
	if err := g.Wait(); err != nil {
		return nil, err
	}
	return out, nil
}

// addTenant prepares a tenant's limiter, metrics and tracker around its
// source.
func (w *Worker) addTenant(t *Tenant, src *queue.Source) {
	name := t.Config.Name
	lt := limiter.NewTenant(w.clock)
	if w.opts.Shared != nil {
		lt = w.opts.Shared.Tenant(name)
	}
	for _, api := range mde.APIs {
		lt.AddSpread(api, t.Config.Resolved.Windows[api], t.Config.SpreadBurst)
	}
	w.m.initTenant(name, t.Config.Resolved.Windows)
	tr := &tenantRun{
		Tenant: t, name: name, limits: lt, source: src, gate: newGate(), log: w.log.WithLazy(zap.String("tenant", name)), cancels: newCancels(),
		backlog: map[offboard.Priority]uint64{}, unacked: map[offboard.Priority]uint64{}, repeats: newRepeats(w.clock),
		readBehind: map[offboard.Priority]context.Context{},
	}
	// Before the campaign watcher reads the marks: a tenant with a
	// cancelled campaign looks for its requests once, at its first wait.
	tr.landed = tr.cancels.next()
	tr.budget = w.newBudget(tr)
	if t.Config.Tracking.Enabled {
		tr.tracker = w.newTracker(tr)
	}
	w.tenants[name] = tr
}

// Start begins taking requests. It returns at once.
func (w *Worker) Start() {
	fetchCtx, stopFetch := context.WithCancel(context.Background())
	workCtx, stopWork := context.WithCancel(context.Background())
	w.stopFetch, w.stopWork = stopFetch, stopWork
	for _, t := range w.tenants {
		w.fetchers.Go(func() { w.runTenant(fetchCtx, workCtx, t) })
		if t.tracker != nil {
			w.fetchers.Go(func() { t.tracker.run(fetchCtx) })
		}
	}
	w.fetchers.Go(func() { w.runPauses(fetchCtx) })
	w.fetchers.Go(func() { w.runAssignment(fetchCtx) })
	w.fetchers.Go(func() { w.runUnrouted(fetchCtx) })
	// A copy: a loop started here may forget its consumer meanwhile.
	for _, conss := range w.staleConsumers() {
		for _, cons := range conss {
			w.fetchers.Go(func() { w.runStale(fetchCtx, cons) })
		}
	}
	w.fetchers.Go(func() { w.runFindStale(fetchCtx) })
	w.fetchers.Go(func() { w.runStats(fetchCtx) })
	w.fetchers.Go(func() { w.runBudgets(fetchCtx) })
	w.fetchers.Go(func() { w.campaigns.Run(fetchCtx) })
	w.planner.start()
	w.serveWorking()
}

// stopGrace bounds how long Stop waits for requests after it cancelled
// them: a cancelled request only stores what it has (each store bounded by
// storeCtx) and naks.
const stopGrace = 40 * time.Second

// ErrCancelled is Stop's error when ctx ended while requests were still
// under way, and every one of them, cancelled, was put back: none is lost.
var ErrCancelled = errors.New("requests still under way, cancelled")

// Stop stops taking requests and waits for those under way to finish. When
// ctx ends first, their calls are cancelled: a cancelled request is not
// acked and comes back after its ack wait, and the ledger keeps it from
// creating a second action; Stop then returns ErrCancelled, unless none
// was under way (then nil). Stop never waits more than stopGrace after
// ctx ends. Stop is idempotent.
func (w *Worker) Stop(ctx context.Context) error {
	w.stopOnce.Do(func() { w.stopErr = w.stop(ctx) })
	return w.stopErr
}

func (w *Worker) stop(ctx context.Context) error {
	if w.stopFetch == nil {
		return nil
	}
	defer func() {
		// Asked until the last request here is over.
		if w.workingSub != nil {
			_ = w.workingSub.Unsubscribe()
		}
	}()
	w.planner.stop()
	w.stopFetch()
	done := make(chan struct{})
	go func() {
		w.fetchers.Wait() // no handler starts after this
		w.handlers.Wait()
		close(done)
	}()
	select {
	case <-done:
		w.stopWork()
		return nil
	case <-ctx.Done():
	}
	// Cancelled: those not over now, under way or handed over by a pull
	// still under way before the loops are over (they start cancelled).
	// Counted once each, whenever it starts: every request begun once the
	// loops are over, less those over now.
	ended := w.ended.Load()
	if w.counted != nil {
		w.counted()
	}
	w.stopWork()
	grace := time.NewTimer(stopGrace) // real time: bounds a shutdown, not logic
	defer grace.Stop()
	select {
	case <-done:
		cancelled := w.begun.Load() - ended
		if cancelled == 0 {
			// The time ran out with nothing under way (spent before the
			// stop began, or by a pull that brought nothing): nothing
			// was cancelled, nothing comes back.
			return nil
		}
		return fmt.Errorf("stop: %d %w: %w", cancelled, ErrCancelled, ctx.Err())
	case <-grace.C:
		return fmt.Errorf("stop: requests still under way %v after they were cancelled", stopGrace)
	}
}

// runTenant takes the tenant's requests as quota and the tenant's
// in-flight cap allow. A request is pulled from the stream only once an
// offboard call could start, so waiting requests stay in the stream
// (unless a campaign's cancel withdraws them: nextRequests); when
// several calls could start, their requests come in one pull, never more
// than the free slots and the quota left allow.
// The loop holds no permit while it waits for a request: a retry under
// way, or the quota gauge, must not find it taken by an idle loop.
// It takes requests only while the tenant is assigned to this replica;
// requests under way when the assignment moves are finished here.
func (w *Worker) runTenant(fetchCtx, workCtx context.Context, t *tenantRun) {
	slots := make(chan struct{}, t.Config.MaxInFlight)
	// Requests whose calls are over and whose results are being stored:
	// as many again at most, so that a slow NATS cannot pile them up.
	finishing := make(chan struct{}, t.Config.MaxInFlight)
	bulk := newBulkPlaces(t.Config.MaxInFlight)
	for {
		select {
		case slots <- struct{}{}:
		case <-fetchCtx.Done():
			return
		}
		actx, err := t.gate.wait(fetchCtx)
		if err != nil {
			<-slots
			return
		}
		ds, n, placed, err := w.nextRequests(actx, t, slots, bulk)
		for range n - len(ds) {
			<-slots // slots the pull did not fill
		}
		if err != nil {
			if fetchCtx.Err() != nil {
				return
			}
			if actx.Err() != nil || errors.Is(err, errPausesChanged) || errors.Is(err, errBulkPlaceFreed) || errors.Is(err, errCancelLanded) {
				continue // the tenant moved to another replica, its pauses changed, a bulk place freed, or a cancel landed
			}
			if errors.Is(err, jetstream.ErrConsumerNotFound) {
				// Made again by the app's keeper within a second or so;
				// with --no-setup, not at all: said once a minute.
				if now := w.clock.Now(); now.Sub(t.goneSaid) >= time.Minute {
					t.goneSaid = now
					t.log.Warn("fetch request: the tenant's consumer is missing (a lone NATS server restarted loses it); it is made again, or with --no-setup, apply deploy/nats", zap.Error(err))
				}
				if w.opts.ConsumerLost != nil {
					w.opts.ConsumerLost()
				}
			} else {
				t.repeats.log(t.log, zap.WarnLevel, causeOf("fetch", err), "fetch request", zap.Error(err))
			}
			if sleepCtx(fetchCtx, w.clock, time.Second) != nil {
				return
			}
			continue
		}
		for _, d := range ds {
			// Usually the quota is there, or comes within the lead; if a
			// retry took it meanwhile, the request waits for its permit
			// like a retry does, kept alive. A request fetched for a
			// cancel (not placed) is answered without a call: it takes
			// no place in the quota.
			var permit *limiter.Permit
			if placed {
				permit = w.aheadPermit(fetchCtx, t, d.Prio == offboard.Bulk)
			}
			slot := &inFlight{slots: slots, finishing: finishing, place: w.newPlace()}
			if d.Prio == offboard.Bulk && placed {
				slot.bulk = bulk // nextRequests took its bulk place
			}
			ctx := context.WithValue(context.WithValue(workCtx, placeKey{}, slot.place), stopKey{}, fetchCtx)
			w.goHandle(func() {
				defer slot.done()
				w.handle(ctx, t, d.Msg, d.Prio, permit, slot.callsOver)
			})
		}
	}
}

// goHandle starts handle, a request's handler, counted for a stop.
func (w *Worker) goHandle(handle func()) {
	w.begun.Add(1)
	w.handlers.Go(func() {
		defer w.ended.Add(1)
		handle()
	})
}

// inFlight is a request's place in its tenant's loop: an in-flight slot
// while it may call the API, then a finishing one while its result is
// stored; and its room under the worker's bound throughout. Only the
// request's own goroutine uses it.
type inFlight struct {
	slots, finishing chan struct{}
	place            *place
	bulk             *bulkPlaces // a bulk request's: it holds one of them with its slot
	moved            bool
}

// callsOver moves the request from its in-flight slot to a finishing one,
// waiting for one to be free.
func (f *inFlight) callsOver() {
	if f.moved {
		return
	}
	f.finishing <- struct{}{}
	<-f.slots
	f.bulk.give()
	f.moved = true
}

// done gives back whichever slot the request holds, and its place under
// the worker's bound.
func (f *inFlight) done() {
	if f.moved {
		<-f.finishing
	} else {
		<-f.slots
		f.bulk.give()
	}
	f.place.give()
}

// bulkPlaces are the tenant's in-flight slots bulk requests may hold: all
// but one when it has more than one. A bulk request holds its slot while
// it waits in the worker (for a read's quota, a retry's backoff, its
// device), which can last minutes; the slot kept from them lets a normal
// request published meanwhile start at once (CONTRACT.md: bulk never
// delays normal priority within a tenant). With maxInFlight 1 a bulk
// request holds the tenant's one slot until its calls are over.
type bulkPlaces struct {
	free  chan struct{} // one per place held
	freed chan struct{} // a place was given back (wakes a fetch of normal requests alone)
}

func newBulkPlaces(maxInFlight int) *bulkPlaces {
	return &bulkPlaces{free: make(chan struct{}, max(maxInFlight-1, 1)), freed: make(chan struct{}, 1)}
}

// take takes up to n places, without waiting, and says how many it took.
func (b *bulkPlaces) take(n int) int { return takeSlots(b.free, n) }

// give gives back a place (nil: none held).
func (b *bulkPlaces) give() {
	if b == nil {
		return
	}
	<-b.free
	b.wake()
}

// wake says that a place was given back, to a fetch of normal requests
// alone waiting for one, or to the loop's next fetch.
func (b *bulkPlaces) wake() {
	select {
	case b.freed <- struct{}{}:
	default:
	}
}

// errBulkPlaceFreed ends a fetch of normal requests alone when a bulk
// place freed: bulk requests may be fetched again.
var errBulkPlaceFreed = errors.New("a bulk place freed")

// errCancelLanded ends a fetch of normal requests alone when a cancel of
// one of the tenant's campaigns landed: the loop takes the requests it
// withdraws (fetchWithdrawn).
var errCancelLanded = errors.New("a campaign's cancel landed")

// bothPriorities are the priorities of requests, in the order they are
// served.
var bothPriorities = []offboard.Priority{offboard.Normal, offboard.Bulk}

// closedChan is a channel closed from the start.
var closedChan = func() chan struct{} {
	c := make(chan struct{})
	close(c)
	return c
}()

// errPausesChanged ends a wait for a request when a pause or resume
// changed which of the tenant's priorities are served.
var errPausesChanged = errors.New("the tenant's pauses changed")

// nextRequests waits until a priority of the tenant is served (not
// paused) and an offboard call could start, without taking its permit,
// then fetches requests of the served priorities: as many as the calls
// that could start now and the free slots allow (it takes those slots;
// with the one the caller holds, n of them). A paused priority is not
// fetched: its requests wait in the stream. A cancel of one of the
// tenant's campaigns ends the wait for quota and budget: the requests
// there are then fetched without it, for as long as they hold requests of
// a cancelled campaign (cancels.go). So does an operator's pause: the
// requests of a cancelled campaign are fetched from every priority,
// paused or not, as they are answered without a call; the others go back
// to the stream at once. Bulk requests are fetched only on the tenant's
// bulk places (bulkPlaces); placed says that the requests returned are
// to be called: each bulk one holds a bulk place, and each needs its
// permit (not so for those fetched for a cancel).
func (w *Worker) nextRequests(ctx context.Context, t *tenantRun, slots chan struct{}, bulk *bulkPlaces) (ds []queue.Delivery, n int, placed bool, err error) {
	landed := t.landed.Done()
	if t.withdrawing {
		landed = closedChan
	}
	prios, changed, err := w.served(ctx, t.name, landed)
	if err != nil {
		return nil, 1, false, err
	}
	if !t.withdrawing && len(prios) < len(bothPriorities) && t.landed.Err() != nil {
		// A cancel landed with a priority paused: the loop takes no
		// request of it, nor waits for quota and budget when every one
		// is, so the cancel takes the campaign's requests now.
		t.withdrawing = true
	}
	if !t.withdrawing {
		if err := w.waitCall(ctx, t); err != nil {
			if ctx.Err() != nil || t.landed.Err() == nil {
				return nil, 1, false, err
			}
			t.withdrawing = true // a cancel landed
		}
	}
	// The waits for quota and budget can be long: a pause may have landed since.
	if !slices.Equal(w.unpaused(t.name), prios) {
		return nil, 1, false, errPausesChanged
	}
	nextCtx, stopNext := w.untilPaused(ctx, t.name, prios, changed)
	defer stopNext()
	if t.withdrawing {
		// Requests of a cancelled campaign, answered without a call:
		// bulk ones hold no bulk place. A pause or resume landing
		// meanwhile does not cut the pass short: it pulls every
		// priority whatever their pauses, and cut short it would give
		// the requests it set aside back behind those it had not
		// pulled again yet, out of their order.
		ds, n, t.withdrawing, err = w.fetchWithdrawn(ctx, t, slots, bothPriorities)
	} else {
		n = 1 + takeSlots(slots, t.limits.API(mde.APIOffboard).AvailableWithin(w.clock.Now(), fetchAhead, cap(slots))-1)
		placed = true
		fetchCtx, stopFetch := nextCtx, func() bool { return false }
		if len(prios) < len(bothPriorities) {
			// A priority is paused: a cancel landing while the fetch
			// waits for a request of the others takes the campaign's
			// requests of the paused one.
			var cancel context.CancelFunc
			fetchCtx, cancel = context.WithCancel(nextCtx)
			defer cancel()
			stopFetch = context.AfterFunc(t.landed, cancel)
		}
		ds, err = fetchWithinBulkPlaces(fetchCtx, t, bulk, n, prios, func(ctx context.Context, n, bulkMax int, prios []offboard.Priority) ([]queue.Delivery, error) {
			return t.source.NextBatchUpTo(ctx, n, bulkMax, w.room(), prios...)
		})
		if stopFetch(); err != nil && nextCtx.Err() == nil && t.landed.Err() != nil {
			t.withdrawing = true
			return nil, n, placed, errCancelLanded
		}
	}
	if err != nil && ctx.Err() == nil && nextCtx.Err() != nil {
		return nil, n, placed, errPausesChanged
	}
	return ds, n, placed, err
}

// fetchWithinBulkPlaces fetches up to n requests of prios (the loop holds
// n slots for them) with fetch, bulk ones only on bulk places: when none
// is free, normal requests alone (fetchNormalAlone); when fewer are free
// than n, no more bulk requests than there are, normal ones up to n. It
// keeps the bulk places of the bulk requests fetched.
func fetchWithinBulkPlaces(ctx context.Context, t *tenantRun, bulk *bulkPlaces, n int, prios []offboard.Priority,
	fetch func(ctx context.Context, n, bulkMax int, prios []offboard.Priority) ([]queue.Delivery, error),
) ([]queue.Delivery, error) {
	if !slices.Contains(prios, offboard.Bulk) {
		return fetch(ctx, n, n, prios)
	}
	select {
	case <-bulk.freed: // taken into account by the take below
	default:
	}
	took := bulk.take(n)
	if took == 0 {
		return fetchNormalAlone(ctx, t, bulk, n, prios, fetch)
	}
	ds, err := fetch(ctx, n, took, prios)
	kept := 0
	for _, d := range ds {
		if d.Prio == offboard.Bulk {
			kept++
		}
	}
	for range took - kept {
		bulk.give()
	}
	return ds, err
}

// fetchNormalAlone fetches up to n normal requests of prios with fetch,
// every bulk place being held, until one frees (errBulkPlaceFreed) or a
// cancel of one of the tenant's campaigns lands, or landed since the
// loop's last pass for one (errCancelLanded): the requests it withdraws
// need no bulk place (fetchWithdrawn), and would otherwise wait behind
// those holding them, for as long as a read's quota.
func fetchNormalAlone(ctx context.Context, t *tenantRun, bulk *bulkPlaces, n int, prios []offboard.Priority,
	fetch func(ctx context.Context, n, bulkMax int, prios []offboard.Priority) ([]queue.Delivery, error),
) ([]queue.Delivery, error) {
	prios = slices.DeleteFunc(slices.Clone(prios), func(p offboard.Priority) bool { return p == offboard.Bulk })
	fctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stop := make(chan struct{})
	defer close(stop)
	landed := t.landed
	go func() {
		select {
		case <-bulk.freed:
			cancel()
			// Said again: this watch may outlive its fetch (one that
			// returned with normal requests as the place was given
			// back), and the wake-up taken here would be lost to the
			// loop's next fetch of normal requests alone, which would
			// then wait for one with the bulk place free.
			bulk.wake()
		case <-landed.Done():
			cancel()
		case <-stop:
		}
	}()
	waitOver := func() error {
		if landed.Err() != nil {
			t.withdrawing = true
			return errCancelLanded
		}
		return errBulkPlaceFreed
	}
	if len(prios) == 0 {
		<-fctx.Done() // normal is paused: wait for a bulk place
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		return nil, waitOver()
	}
	ds, err := fetch(fctx, n, 0, prios)
	if err != nil && ctx.Err() == nil && fctx.Err() != nil {
		return nil, waitOver()
	}
	return ds, err
}

// takeSlots takes up to n more of the free slots, without waiting, and
// says how many it took.
func takeSlots(slots chan struct{}, n int) int {
	for i := range max(n, 0) {
		select {
		case slots <- struct{}{}:
		default:
			return i
		}
	}
	return max(n, 0)
}

// waitQuota returns once an offboard call of the tenant could start
// within fetchAhead, without taking its permit.
func (w *Worker) waitQuota(ctx context.Context, t *tenantRun) error {
	start := w.clock.Now()
	defer func() {
		w.m.LimiterWait.WithLabelValues(mde.APIOffboard).Observe(w.clock.Since(start).Seconds())
	}()
	return t.limits.API(mde.APIOffboard).WaitWithin(ctx, fetchAhead)
}

// aheadPermit takes the permit of a request just fetched: at once if its
// place is free or frees within recordAhead, else when it does, within
// fetchAhead. The loop waits for it, so that it fetches no more requests
// for the same place, and hands out the places in the order the requests
// came. nil means the place went elsewhere (a retry took it): the request
// waits for its permit itself. A permit taken before its place frees
// (limiter.Permit.NotBefore) has its journal and ledger entries written
// meanwhile, and its call goes out when the place frees (sendChecked).
func (w *Worker) aheadPermit(ctx context.Context, t *tenantRun, bulk bool) *limiter.Permit {
	l := t.limits.API(mde.APIOffboard)
	if bulk {
		// Behind the bulk requests that wait for their permits (retries):
		// fetched after them, it does not take their places.
		return l.AcquireAheadBehind(ctx, fetchAhead, recordAhead)
	}
	return l.AcquireAhead(ctx, fetchAhead, recordAhead)
}

// recordAhead is how long before its place frees a fetched request's
// permit is taken: about what the call's journal entry and ledger entry,
// written side by side, take to be stored. Taken later, the place would
// stand unused while they are written; earlier, the permit would count as
// a call under way, here and in the other replicas, for longer than it
// needs.
const recordAhead = 5 * time.Millisecond

// fetchAhead is how long before a place in the quota frees its tenant's
// next requests are fetched: the fetch and the request's checks are then
// done by the time the place frees, and only the ledger's "calling" entry
// and the call's journal entry, side by side, stand between it and the
// call. At full pace a place unused for a few milliseconds in every
// window is quota lost. The loop takes the permits of the requests it
// fetched ahead as their places free (aheadPermit).
const fetchAhead = 10 * time.Millisecond

// newTracker makes the tenant's tracker.
func (w *Worker) newTracker(t *tenantRun) *tracker {
	var clockOff func() bool
	if w.opts.Shared != nil {
		clockOff = w.opts.Shared.LookAtClock
	}
	return newTracker(trackerConfig{
		tenant: t.name, cfg: t.Config.Tracking, store: w.opts.Ledger, actions: tenantActions{c: w.caller, t: t},
		publish: func(ctx context.Context, subject, msgID string, data []byte) error {
			return queue.PublishJSON(ctx, w.opts.JS, subject, msgID, data)
		},
		subjects: w.opts.Settings.Subjects, clock: w.clock, log: t.log.Named("tracker"),
		notFoundCheck: w.caller.retry.NotFoundCheck, metrics: w.m,
		maxEvent: int(w.opts.JS.Conn().MaxPayload()) - resultRoom,
		clockOff: clockOff,
		disputed: func() string { return w.disputed(t.name) },
	})
}

// tenantActions reads a tenant's actions for its tracker.
type tenantActions struct {
	c *caller
	t *tenantRun
}

func (a tenantActions) permit(ctx context.Context) (*limiter.Permit, error) {
	return a.t.limits.API(mde.APIMachineActions).AcquireLow(ctx)
}

func (a tenantActions) get(ctx context.Context, p *limiter.Permit, id string) (*mde.Verdict, error) {
	return a.c.send(ctx, a.t, mde.APIMachineActions, p, func(ctx context.Context) *mde.Verdict { return a.t.Client.GetAction(ctx, id) })
}

func (a tenantActions) throttled(ctx context.Context, v *mde.Verdict) {
	a.c.pause(ctx, a.t, mde.APIMachineActions, v, a.t.log)
}

func (a tenantActions) refreshToken(v *mde.Verdict) {
	if a.t.Cred == nil {
		return
	}
	if err := a.t.Cred.TokenRefused(v); err != nil {
		a.t.log.Warn("get a new token", zap.Error(err))
	}
}

// runStats refreshes the backlog, oldest waiting age and quota gauges.
func (w *Worker) runStats(ctx context.Context) {
	var others othersSweep // the first pass sweeps them
	for {
		changed := w.opts.Control.Changed() // before the controls are read
		for _, t := range w.tenants {
			for _, api := range mde.APIs {
				l := t.limits.API(api)
				rem, ws := l.Remaining(w.clock.Now()), l.Windows()
				for _, i := range shownWindows(ws) {
					w.m.QuotaRemaining.WithLabelValues(t.name, api, ws[i].Label()).Set(float64(rem[i]))
				}
			}
			// Another replica's pause comes through the quota journal;
			// so does this process's own, met before it started.
			w.m.setThrottledUntil(t.name, t.limits.LastPause())
			w.refreshWaiting(ctx, t)
			w.setPaused(t)
			t.created.prune(w.clock.Now())
			t.budget.setPending(t.backlog, t.unacked, w.opts.Control)
			w.setBudgetGauges(t)
		}
		w.answerLookalikes(ctx)
		w.sweepSome(ctx, &others)
		// A control change refreshes the paused and held gauges at once.
		timer := w.clock.NewTimer(w.opts.StatsEvery)
		select {
		case <-ctx.Done():
			timer.Stop()
			return
		case <-timer.Chan():
		case <-changed:
			timer.Stop()
		case <-w.statsKick:
			timer.Stop()
		}
	}
}

// keyedMutex serialises work on one device, so that two requests for it
// never race each other to the API.
type keyedMutex struct {
	mu    sync.Mutex
	locks map[string]*keyedEntry
}

type keyedEntry struct {
	ch   chan struct{}
	refs int
}

// ref returns the key's entry, created if needed, counted as used until
// the returned func is called.
func (k *keyedMutex) ref(key string) (*keyedEntry, func()) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.locks == nil {
		k.locks = map[string]*keyedEntry{}
	}
	e := k.locks[key]
	if e == nil {
		e = &keyedEntry{ch: make(chan struct{}, 1)}
		k.locks[key] = e
	}
	e.refs++
	return e, func() {
		k.mu.Lock()
		defer k.mu.Unlock()
		if e.refs--; e.refs == 0 {
			delete(k.locks, key)
		}
	}
}

// tryLock takes the device's lock if it is free.
func (k *keyedMutex) tryLock(key string) (func(), bool) {
	e, unref := k.ref(key)
	select {
	case e.ch <- struct{}{}:
		return func() { <-e.ch; unref() }, true
	default:
		unref()
		return nil, false
	}
}

// lock waits for the device's lock.
func (k *keyedMutex) lock(ctx context.Context, key string) (func(), error) {
	e, unref := k.ref(key)
	select {
	case e.ch <- struct{}{}:
		return func() { <-e.ch; unref() }, nil
	case <-ctx.Done():
		unref()
		return nil, ctx.Err()
	}
}
