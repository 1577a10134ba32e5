package worker

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jonboulle/clockwork"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"go.uber.org/zap"

	"github.com/contoso-secops/mde-offboard/internal/config"
	"github.com/contoso-secops/mde-offboard/internal/limiter"
	"github.com/contoso-secops/mde-offboard/internal/mde"
	"github.com/contoso-secops/mde-offboard/internal/queue"
	"github.com/contoso-secops/mde-offboard/internal/queue/natstest"
	"github.com/contoso-secops/mde-offboard/offboard"
)

// The documented machineactions limits: tracking may take half of them,
// 750 looks an hour.
var trackWindows = []limiter.Window{{Count: 100, Length: time.Minute}, {Count: 1500, Length: time.Hour}}

const trackBudgetPerHour = 750

// fakeActions answers every look with a Pending action and records it.
type fakeActions struct {
	clock   clockwork.Clock
	lim     *limiter.Limiter
	windows []limiter.Window

	mu    sync.Mutex
	looks map[string][]time.Time
	all   []time.Time
}

func (f *fakeActions) permit(ctx context.Context) (*limiter.Permit, error) {
	return f.lim.AcquireLow(ctx)
}

func (f *fakeActions) get(_ context.Context, p *limiter.Permit, id string) (*mde.Verdict, error) {
	now := f.clock.Now()
	p.Complete(now)
	f.mu.Lock()
	f.looks[id] = append(f.looks[id], now)
	f.all = append(f.all, now)
	f.mu.Unlock()
	body := fmt.Sprintf(`{"id":%q,"type":"Offboard","status":"Pending"}`, id)
	return &mde.Verdict{Class: mde.Success, Status: 200, Body: []byte(body), Sent: true}, nil
}

func (f *fakeActions) throttled(context.Context, *mde.Verdict) {}
func (f *fakeActions) refreshToken(*mde.Verdict)               {}
func (f *fakeActions) budget() float64                         { return trackBudget(f.windows) }

func (f *fakeActions) count() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.all)
}

// maxInHour is the most looks in any sliding hour.
func (f *fakeActions) maxInHour() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	most := 0
	for i, at := range f.all {
		j, _ := slices.BinarySearchFunc(f.all, at.Add(-time.Hour), func(a, b time.Time) int { return a.Compare(b) })
		for j < i && !f.all[j].After(at.Add(-time.Hour)) {
			j++
		}
		most = max(most, i-j+1)
	}
	return most
}

// trackEnv is a tracker over a real ledger (NATS in this process) with a
// fake clock, a real limiter and a fake API.
type trackEnv struct {
	t      *testing.T
	tr     *tracker
	clock  *clockwork.FakeClock
	api    *fakeActions
	m      *Metrics
	reads  atomic.Int64 // ledger reads of one entry, seen on the wire
	obs    *nats.Conn
	start  time.Time
	window int
}

// contosoLedger makes the streams and buckets of tenant contoso and
// returns the ledger.
func contosoLedger(t *testing.T, js jetstream.JetStream) *queue.Ledger {
	t.Helper()
	if _, err := queue.Ensure(t.Context(), js, queue.Settings{Tenants: []string{"contoso"}}); err != nil {
		t.Fatal(err)
	}
	ledger, err := queue.NewLedger(t.Context(), js)
	if err != nil {
		t.Fatal(err)
	}
	return ledger
}

// setupTracker seeds the ledger with n followed actions, all Pending since
// the start and due within its first hour, then starts a tracker that
// holds at most window of them.
func setupTracker(t *testing.T, n, window int) *trackEnv {
	t.Helper()
	nc, js := natstest.Connect(t)
	ledger := contosoLedger(t, js)
	e := &trackEnv{t: t, start: time.Date(2026, 11, 24, 10, 0, 0, 0, time.UTC), window: window}
	e.countReads(nc.ConnectedUrl())
	e.seed(js, n)
	e.clock = clockwork.NewFakeClockAt(e.start)
	e.api = &fakeActions{clock: e.clock, windows: trackWindows, looks: map[string][]time.Time{},
		lim: limiter.NewTenant(e.clock).Add(mde.APIMachineActions, trackWindows)}
	e.m = NewMetrics(prometheus.NewRegistry())
	e.tr = newTracker(trackerConfig{
		tenant: "contoso", store: ledger, actions: e.api, clock: e.clock, log: zap.NewNop(),
		cfg: config.Tracking{Enabled: true, FirstCheck: config.Duration(time.Minute),
			MaxInterval: config.Duration(time.Hour), MaxAge: config.Duration(168 * time.Hour)},
		publish:  func(context.Context, string, string, []byte) error { return nil },
		subjects: offboard.Subjects{}, notFoundCheck: 3, metrics: e.m,
		window: window,
	})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); e.tr.run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	return e
}

// countReads counts the requests that read one ledger entry (KV get),
// whichever API the client uses for them.
func (e *trackEnv) countReads(url string) {
	obs, err := nats.Connect(url)
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(obs.Close)
	stream := "KV_" + offboard.BucketLedger
	for _, subj := range []string{"$JS.API.DIRECT.GET." + stream, "$JS.API.DIRECT.GET." + stream + ".>", "$JS.API.STREAM.MSG.GET." + stream} {
		if _, err := obs.Subscribe(subj, func(*nats.Msg) { e.reads.Add(1) }); err != nil {
			e.t.Fatal(err)
		}
	}
	if err := obs.Flush(); err != nil {
		e.t.Fatal(err)
	}
	e.obs = obs
}

// readsSoFar is the count of ledger reads made until now.
func (e *trackEnv) readsSoFar() int64 {
	if err := e.obs.Flush(); err != nil {
		e.t.Fatal(err)
	}
	return e.reads.Load()
}

func (e *trackEnv) seed(js jetstream.JetStream, n int) {
	for i := range n {
		st := tracked{
			RequestID: fmt.Sprintf("r-%06d", i), MachineID: fmt.Sprintf("%040x", i), ActionID: fmt.Sprintf("act-%06d", i),
			Status: "Pending", Since: e.start, Interval: time.Hour,
			Next: e.start.Add(time.Duration(i) * time.Hour / time.Duration(n)),
		}
		data, err := json.Marshal(st)
		if err != nil {
			e.t.Fatal(err)
		}
		key := "a.contoso." + base64.RawURLEncoding.EncodeToString([]byte(st.ActionID))
		if _, err := js.PublishAsync("$KV."+offboard.BucketLedger+"."+key, data); err != nil {
			e.t.Fatal(err)
		}
		if i%1000 == 999 || i == n-1 { // within the client's limit of messages in flight
			select {
			case <-js.PublishAsyncComplete():
			case <-time.After(time.Minute):
				e.t.Fatal("seeding the ledger stalled for a minute")
			}
		}
	}
}

// runFor moves the fake clock on by step each time the tracker waits on
// it, for d, and calls check before each step.
func (e *trackEnv) runFor(d, step time.Duration, check func(now time.Time)) {
	e.t.Helper()
	end := e.clock.Now().Add(d)
	for e.clock.Now().Before(end) {
		ctx, cancel := context.WithTimeout(e.t.Context(), 30*time.Second)
		err := e.clock.BlockUntilContext(ctx, 1)
		cancel()
		if err != nil {
			e.t.Fatalf("at %v the tracker never waited: %v", e.clock.Since(e.start), err)
		}
		check(e.clock.Now())
		e.clock.Advance(step)
	}
}

// held is how many actions the tracker holds in memory, and their ids
// (the one being looked at included).
func (e *trackEnv) held() (queued, ids int) {
	e.tr.mu.Lock()
	defer e.tr.mu.Unlock()
	return len(e.tr.queue), len(e.tr.ids)
}

// checkHeld fails the test when the tracker holds more than its window.
func (e *trackEnv) checkHeld(most *int) func(time.Time) {
	return func(now time.Time) {
		q, ids := e.held()
		*most = max(*most, q, ids)
		if q > e.window || ids > e.window+1 {
			e.t.Fatalf("at %v the tracker holds %d actions (%d ids), more than its window of %d", now.Sub(e.start), q, ids, e.window)
		}
	}
}

// TestTrackerMemoryAndReadsStayBounded: with 20,000 followed actions and a
// window of 500, the tracker holds at most 500 of them in memory, its
// scans of the ledger read no entry one by one (the only single reads are
// the claims before each look), and it looks within the budget.
func TestTrackerMemoryAndReadsStayBounded(t *testing.T) {
	t.Parallel()
	const n, window = 20_000, 500
	e := setupTracker(t, n, window)
	most := 0
	e.runFor(time.Hour, 10*time.Second, e.checkHeld(&most))
	reads := e.readsSoFar()
	looks := e.api.count()
	t.Logf("held at most %d; %d looks, %d single ledger reads in an hour", most, looks, reads)
	if looks == 0 {
		t.Fatal("no look in an hour")
	}
	// One read per look (the claim), give or take a few claims under way
	// as the hour ends (on a loaded machine, 752 reads for 750 looks); a
	// scan of the ledger reads none, where one reading its 20,000 entries
	// one by one would read thousands.
	if reads > int64(looks)+10 {
		t.Errorf("%d single ledger reads for %d looks: the scans read entries one by one", reads, looks)
	}
	if most := e.api.maxInHour(); most > trackBudgetPerHour {
		t.Errorf("%d looks in one hour, budget %d", most, trackBudgetPerHour)
	}
	if got := testutil.ToFloat64(e.m.TrackedActions.WithLabelValues("contoso")); got != n {
		t.Errorf("mde_offboard_tracked_actions = %v, want %d", got, n)
	}
}

// TestTrackerLooksAtEveryActionWithinBudget: with 1,500 actions followed
// and a budget of 750 looks an hour, each is looked at within
// max(maxInterval, followed/budget) = 2 h of its due time, no hour sees
// more looks than the budget, the tracker holds no more than its window,
// and once the first round is done the looks keep up: the lag stays
// small, where intervals that ignore the budget (1 h) would leave it
// hours behind.
func TestTrackerLooksAtEveryActionWithinBudget(t *testing.T) {
	t.Parallel()
	const n, window = 1500, 100
	e := setupTracker(t, n, window)
	most := 0
	check := e.checkHeld(&most)
	spread := time.Duration(n) * time.Hour / trackBudgetPerHour // 2h
	var lagLate float64
	e.runFor(7*time.Hour, 30*time.Second, func(now time.Time) {
		check(now)
		if now.Sub(e.start) > 2*spread {
			lagLate = max(lagLate, testutil.ToFloat64(e.m.TrackingLag.WithLabelValues("contoso")))
		}
	})
	e.api.mu.Lock()
	looked := len(e.api.looks)
	var late []string
	for id, at := range e.api.looks {
		// Due within the first hour, looked at within the spread after.
		if first := at[0]; first.After(e.start.Add(time.Hour + spread + 30*time.Minute)) {
			late = append(late, fmt.Sprintf("%s first at %v", id, first.Sub(e.start)))
		}
		for i := 1; i < len(at); i++ {
			if gap := at[i].Sub(at[i-1]); gap > spread+time.Hour {
				late = append(late, fmt.Sprintf("%s %v between looks", id, gap))
			}
		}
	}
	e.api.mu.Unlock()
	t.Logf("%d of %d actions looked at, %d looks, held at most %d, lag after the first rounds at most %.0fs",
		looked, n, e.api.count(), most, lagLate)
	if looked != n {
		t.Errorf("%d of %d actions looked at", looked, n)
	}
	if len(late) > 0 {
		t.Errorf("%d looks later than the schedule allows, first: %v", len(late), late[:min(5, len(late))])
	}
	if most := e.api.maxInHour(); most > trackBudgetPerHour {
		t.Errorf("%d looks in one hour, budget %d", most, trackBudgetPerHour)
	}
	if lagLate > time.Hour.Seconds() {
		t.Errorf("tracking lag reached %.0fs after the first rounds: the looks asked for exceed the budget", lagLate)
	}
}

// starvedActions never gets quota: the offboard lookups take every
// machineactions call the windows allow.
type starvedActions struct{ fakeActions }

func (s *starvedActions) permit(ctx context.Context) (*limiter.Permit, error) {
	<-ctx.Done()
	return nil, ctx.Err()
}

// TestTrackingLagShowsStarvedLooks: while a due look waits for quota that
// never comes, the lag gauge grows with the wait (what
// MdeOffboardTrackingBehind alerts on) instead of keeping the value it had
// when the look came due.
func TestTrackingLagShowsStarvedLooks(t *testing.T) {
	t.Parallel()
	_, js := natstest.Connect(t)
	ledger := contosoLedger(t, js)
	start := time.Date(2026, 11, 24, 10, 0, 0, 0, time.UTC)
	clock := clockwork.NewFakeClockAt(start)
	m := NewMetrics(prometheus.NewRegistry())
	tr := newTracker(trackerConfig{
		tenant: "contoso", store: ledger, clock: clock, log: zap.NewNop(),
		actions: &starvedActions{fakeActions{clock: clock, windows: trackWindows}},
		cfg: config.Tracking{Enabled: true, FirstCheck: config.Duration(time.Minute),
			MaxInterval: config.Duration(time.Hour), MaxAge: config.Duration(168 * time.Hour)},
		publish:  func(context.Context, string, string, []byte) error { return nil },
		subjects: offboard.Subjects{}, notFoundCheck: 3, metrics: m, lagRefresh: 10 * time.Millisecond,
	})
	runTrackingPending(t, tr)
	// The look comes due after firstCheck (or the spread), then waits for
	// quota without waiting on the clock: step the clock on regardless.
	for range 120 {
		wctx, wcancel := context.WithTimeout(t.Context(), 100*time.Millisecond)
		_ = clock.BlockUntilContext(wctx, 1)
		wcancel()
		clock.Advance(30 * time.Second)
	}
	// An hour on, the look is some 58 minutes overdue.
	deadline := time.Now().Add(10 * time.Second)
	for {
		lag := testutil.ToFloat64(m.TrackingLag.WithLabelValues("contoso"))
		if lag >= (55 * time.Minute).Seconds() {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("mde_offboard_tracking_lag_seconds = %.0f an hour after the look came due, waiting for quota all along", lag)
		}
		time.Sleep(20 * time.Millisecond)
		clock.Advance(time.Second)
	}
}

// scriptedActions answers looks with the given statuses in turn ("null":
// the status member null), the last one over and over.
type scriptedActions struct {
	fakeActions
	statuses []string
	pad      int    // bytes of a troubleshootInfo member in each answer
	members  string // more members of each answer, JSON ("" none)
}

func (s *scriptedActions) permit(context.Context) (*limiter.Permit, error) {
	return s.lim.AcquireLow(context.Background())
}

func (s *scriptedActions) get(_ context.Context, p *limiter.Permit, id string) (*mde.Verdict, error) {
	p.Complete(s.clock.Now())
	s.mu.Lock()
	status := s.statuses[min(len(s.all), len(s.statuses)-1)]
	s.all = append(s.all, s.clock.Now())
	s.mu.Unlock()
	if status != "null" {
		status = strconv.Quote(status)
	}
	body := fmt.Sprintf(`{"id":%q,"type":"Offboard","status":%s}`, id, status)
	if s.pad > 0 {
		body = fmt.Sprintf(`{"id":%q,"type":"Offboard","status":%s,"troubleshootInfo":%q}`, id, status, strings.Repeat("x", s.pad))
	}
	if s.members != "" {
		body = strings.TrimSuffix(body, "}") + "," + s.members + "}"
	}
	return &mde.Verdict{Class: mde.Success, Status: 200, Body: []byte(body), Sent: true}, nil
}

// TestTrackingEndsOnlyOnAFinalStatus: an action read without a status
// (the API may answer any member null) is not finished: tracking goes on
// and ends on the documented final status that follows.
func TestTrackingEndsOnlyOnAFinalStatus(t *testing.T) {
	t.Parallel()
	events := trackScripted(t, "null", "Succeeded")
	var got []string
	for _, ev := range events {
		got = append(got, fmt.Sprintf("%q final=%v", ev.Status, ev.Final))
	}
	if last := events[len(events)-1]; last.Status != "Succeeded" || !last.Final {
		t.Errorf("events %v, want the last Succeeded and final", got)
	}
	for _, ev := range events[:len(events)-1] {
		if ev.Final {
			t.Errorf("events %v: a final event before Succeeded", got)
		}
	}
}

// trackScripted follows a Pending action for ten minutes while the API
// answers its reads with statuses, one after the other (the last for the
// rest; "null": a read without a status), and returns the events.
func trackScripted(t *testing.T, statuses ...string) []ActionEvent {
	t.Helper()
	clock := clockwork.NewFakeClockAt(time.Date(2026, 11, 24, 10, 0, 0, 0, time.UTC))
	api := scriptedFor(clock, statuses...)
	tr, log := newWeekTracker(t, &api, clock)
	runTrackingPending(t, tr)
	trackTenMinutes(t, clock)
	return log.all()
}

// scriptedFor answers statuses as scriptedActions does, under a
// machineactions limiter of trackWindows on clock.
func scriptedFor(clock clockwork.Clock, statuses ...string) scriptedActions {
	return scriptedActions{statuses: statuses, fakeActions: fakeActions{clock: clock, windows: trackWindows,
		lim: limiter.NewTenant(clock).Add(mde.APIMachineActions, trackWindows)}}
}

// newWeekTracker is contoso's tracker over a ledger of its own, reading
// api: a first look after a minute, then the interval doubled up to an
// hour, for a week. Its events go to the log returned.
func newWeekTracker(t *testing.T, api actionReader, clock clockwork.Clock) (*tracker, *eventLog) {
	t.Helper()
	_, js := natstest.Connect(t)
	log := &eventLog{}
	return newTracker(trackerConfig{
		tenant: "contoso", store: contosoLedger(t, js), actions: api, clock: clock, log: zap.NewNop(),
		cfg: config.Tracking{Enabled: true, FirstCheck: config.Duration(time.Minute),
			MaxInterval: config.Duration(time.Hour), MaxAge: config.Duration(168 * time.Hour)},
		publish: log.publish, subjects: offboard.Subjects{}, notFoundCheck: 3,
	}), log
}

// TestTrackingReadsAStatusInAnyCase: the API answering "pending" for an
// action followed as Pending is no change, and "succeeded" ends the
// tracking as Succeeded does; each event names the status as documented.
// Compared exactly, "pending" was published as a change and "succeeded"
// followed for ever as a status that may still change.
func TestTrackingReadsAStatusInAnyCase(t *testing.T) {
	t.Parallel()
	var got []string
	for _, ev := range trackScripted(t, "pending", "succeeded") {
		got = append(got, fmt.Sprintf("%s<-%s final=%v", ev.Status, ev.PreviousStatus, ev.Final))
	}
	if want := []string{"Pending<- final=false", "Succeeded<-Pending final=true"}; !slices.Equal(got, want) {
		t.Errorf("events %v, want %v", got, want)
	}
}

// TestTrackingCutsAnActionTooLargeForAnEvent: an action read back larger
// than a message of the server's is published cut down to its documented
// members. Whole, its event was refused at every look, and the status
// change never reported.
func TestTrackingCutsAnActionTooLargeForAnEvent(t *testing.T) {
	t.Parallel()
	_, js := natstest.Connect(t)
	ledger := contosoLedger(t, js)
	clock := clockwork.NewFakeClockAt(time.Date(2026, 11, 24, 10, 0, 0, 0, time.UTC))
	api := &scriptedActions{statuses: []string{"Succeeded"}, pad: 200 << 10, fakeActions: fakeActions{clock: clock, windows: trackWindows,
		lim: limiter.NewTenant(clock).Add(mde.APIMachineActions, trackWindows)}}
	last := lastEventWithin128KiB(t, ledger, clock, api)
	if last.Status != "Succeeded" || !last.Final || strings.Contains(string(last.MachineAction), "troubleshootInfo") || !strings.Contains(string(last.MachineAction), `"id":"act-1"`) {
		t.Errorf("last event %s final=%v, action %.200s", last.Status, last.Final, last.MachineAction)
	}
}

// TestTrackingEventOfEscapedTexts: an action whose documented members
// hold text that JSON escapes (<, six bytes each), and a troubleshootInfo
// that makes it too large for a message of 128 KiB, is published cut
// down within that message. Its event carried the action escaped, which
// took its members six times their bytes: cut down, it was still refused
// at every look, and the status change never reported.
func TestTrackingEventOfEscapedTexts(t *testing.T) {
	t.Parallel()
	_, js := natstest.Connect(t)
	ledger := contosoLedger(t, js)
	clock := clockwork.NewFakeClockAt(time.Date(2026, 11, 24, 10, 0, 0, 0, time.UTC))
	text := strings.Repeat("<", 4000)
	api := &scriptedActions{statuses: []string{"Succeeded"}, pad: 200 << 10,
		members:     fmt.Sprintf(`"title":%q,"requestor":%q,"cancellationComment":%q,"scope":%q,"externalId":%q,"cancellationRequestor":%q`, text, text, text, text, text, text),
		fakeActions: fakeActions{clock: clock, windows: trackWindows, lim: limiter.NewTenant(clock).Add(mde.APIMachineActions, trackWindows)}}
	last := lastEventWithin128KiB(t, ledger, clock, api)
	if last.Status != "Succeeded" || !last.Final || !strings.Contains(string(last.MachineAction), `"id":"act-1"`) {
		t.Errorf("last event %s final=%v, action %.200s", last.Status, last.Final, last.MachineAction)
	}
}

// lastEventWithin128KiB follows act-1 ten minutes, reading it from api,
// with action events refused over 128 KiB (a server's max payload), and
// returns the last event published.
func lastEventWithin128KiB(t *testing.T, ledger trackStore, clock *clockwork.FakeClock, api actionReader) ActionEvent {
	t.Helper()
	log := eventLog{max: 128 << 10}
	tr := newTracker(trackerConfig{
		tenant: "contoso", store: ledger, actions: api, clock: clock, log: zap.NewNop(),
		cfg: config.Tracking{Enabled: true, FirstCheck: config.Duration(time.Minute),
			MaxInterval: config.Duration(time.Hour), MaxAge: config.Duration(168 * time.Hour)},
		publish: log.publish, subjects: offboard.Subjects{}, notFoundCheck: 3, maxEvent: log.max - resultRoom,
	})
	runTrackingPending(t, tr)
	trackTenMinutes(t, clock)
	events := log.all()
	return events[len(events)-1]
}

// eventLog keeps the action events a tracker publishes. With max set, it
// refuses an event larger, as a server of that max payload does.
type eventLog struct {
	max    int
	mu     sync.Mutex
	events []ActionEvent
}

func (l *eventLog) publish(_ context.Context, _, _ string, data []byte) error {
	if l.max > 0 && len(data) > l.max {
		return nats.ErrMaxPayload
	}
	var ev ActionEvent
	if err := json.Unmarshal(data, &ev); err != nil {
		return err
	}
	l.mu.Lock()
	l.events = append(l.events, ev)
	l.mu.Unlock()
	return nil
}

func (l *eventLog) all() []ActionEvent {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.events)
}

// trackTenMinutes moves the clock ten minutes on in steps of 20 s, each
// once the tracker waits: a first look at 1 min, the next 2 min later.
func trackTenMinutes(t *testing.T, clock *clockwork.FakeClock) {
	t.Helper()
	for range 30 {
		wctx, wcancel := context.WithTimeout(t.Context(), 10*time.Second)
		err := clock.BlockUntilContext(wctx, 1)
		wcancel()
		if err != nil {
			t.Fatalf("the tracker never waited: %v", err)
		}
		clock.Advance(20 * time.Second)
	}
}

// runTrackingPending runs tr until the test ends, and has it follow one
// Pending action, act-1 of request r-1.
func runTrackingPending(t *testing.T, tr *tracker) {
	t.Helper()
	runTracker(t, tr)
	action := `{"id":"act-1","type":"Offboard","status":"Pending"}`
	if err := tr.track(t.Context(), &offboard.Result{RequestID: "r-1", MachineID: fmt.Sprintf("%040x", 1), MachineAction: json.RawMessage(action)}); err != nil {
		t.Fatal(err)
	}
}
