package limiter

import (
	"container/heap"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/jonboulle/clockwork"
	"go.uber.org/goleak"

	"github.com/contoso-secops/mde-offboard/internal/testwait"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

var epoch = time.Date(2026, 11, 24, 0, 0, 0, 0, time.UTC)

func TestParseWindow(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		in   string
		want Window
		err  bool
	}{
		{in: "100/1m", want: Window{100, time.Minute}},
		{in: "1500/1h", want: Window{1500, time.Hour}},
		{in: " 10/200ms ", want: Window{10, 200 * time.Millisecond}},
		{in: "100", err: true},
		{in: "0/1m", err: true},
		{in: "-1/1m", err: true},
		{in: "x/1m", err: true},
		{in: "100/0s", err: true},
		{in: "100/minute", err: true},
		{in: "", err: true},
		{in: "100/1m/1", err: true},
	} {
		got, err := ParseWindow(tc.in)
		if tc.err {
			if err == nil {
				t.Errorf("ParseWindow(%q) = %v, want an error", tc.in, got)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("ParseWindow(%q) = %v, %v; want %v", tc.in, got, err, tc.want)
		}
	}
	if _, err := ParseWindows(nil); err == nil {
		t.Error("ParseWindows(nil) gave no error")
	}
}

// A budget is a limit whose window is at least MinBudget: under it, a
// slip of the unit or no budget at all.
func TestParseBudget(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		in   string
		want Window
		err  string
	}{
		{in: "500/24h", want: Window{500, 24 * time.Hour}},
		{in: "1/1s", want: Window{1, time.Second}},
		{in: "5/1000ms", want: Window{5, time.Second}},
		{in: "1/1ns", err: "at least 1s"},
		{in: "5/1ms", err: "at least 1s"},
		{in: "5/999ms", err: "at least 1s"},
		{in: "0/24h", err: "a budget's count must be a positive whole number, like the 500 of 500/24h"},
		{in: "500/0s", err: "a budget's duration must be a positive Go duration, like the 24h of 500/24h"},
		{in: "500/24h/1", err: "a budget is written <count>/<duration>, like 500/24h"},
		{in: "9223372036854775808/24h", err: "a budget's count must be at most 10000000"},
		{in: "-9223372036854775809/24h", err: "a budget's count must be a positive whole number"},
		// A count no tenant needs, as large as an int goes, is refused:
		// it wraps where a count is added to, and a gauge shows it as
		// more than it is.
		{in: "9223372036854775807/24h", err: "a budget's count must be at most 10000000"},
		{in: "10000001/1s", err: "a budget's count must be at most 10000000"},
		{in: "10000000/24h", want: Window{MaxBudget, 24 * time.Hour}},
	} {
		got, err := ParseBudget(tc.in)
		switch {
		case tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)):
			t.Errorf("ParseBudget(%q) = %v, %v; want an error saying %q", tc.in, got, err, tc.err)
		case tc.err == "" && (err != nil || got != tc.want):
			t.Errorf("ParseBudget(%q) = %v, %v; want %v", tc.in, got, err, tc.want)
		}
	}
}

// Spec writes a window one way only, and a plain one as it is written.
func TestWindowSpec(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]string{
		"500/24h": "500/24h", "5/1h": "5/1h", "100/1m": "100/1m", "10/30s": "10/30s", "1/1h30m": "1/1h30m", "1/1.5s": "1/1.5s",
		"+5/1h": "5/1h", "05/1h": "5/1h", "5/60m": "5/1h", "5/3600s": "5/1h", "5/1h0m0s": "5/1h", "5/+1h": "5/1h",
		"5/.5h": "5/30m", "5/1.h": "5/1h", "5/90m": "5/1h30m", "5/1000ms": "5/1s", "1/24h0m1s": "1/24h0m1s",
	} {
		w, err := ParseWindow(in)
		if got := w.Spec(); err != nil || got != want {
			t.Errorf("ParseWindow(%q).Spec() = %q, %v; want %q", in, got, err, want)
		}
	}
}

func TestWindowLabel(t *testing.T) {
	t.Parallel()
	for in, want := range map[time.Duration]string{
		time.Minute: "1m", time.Hour: "1h", 90 * time.Second: "90s", 200 * time.Millisecond: "200ms", 2 * time.Hour: "2h",
	} {
		if got := (Window{Count: 1, Length: in}).Label(); got != want {
			t.Errorf("Label(%v) = %q, want %q", in, got, want)
		}
	}
}

func TestTryAcquireWindow(t *testing.T) {
	t.Parallel()
	l := NewTenant(clockwork.NewFakeClockAt(epoch)).Add("offboard", []Window{{Count: 3, Length: time.Minute}})
	var permits []*Permit
	for i := range 3 {
		p, _ := l.TryAcquire(epoch)
		if p == nil {
			t.Fatalf("call %d refused with an empty window", i)
		}
		permits = append(permits, p)
	}
	if p, wait := l.TryAcquire(epoch); p != nil || wait != 0 {
		t.Fatalf("fourth call: permit %v wait %v; want refusal until a completion", p, wait)
	}
	// Answers arrive at +1s, +2s, +3s: the calls sit in the window from then on.
	for i, p := range permits {
		p.Complete(epoch.Add(time.Duration(i+1) * time.Second))
	}
	if p, wait := l.TryAcquire(epoch.Add(30 * time.Second)); p != nil || wait != 31*time.Second {
		t.Fatalf("at +30s: permit %v wait %v; want none and 31s (first answer +1s leaves at +61s)", p, wait)
	}
	if p, _ := l.TryAcquire(epoch.Add(61 * time.Second)); p == nil {
		t.Fatal("at +61s the first call has left the window, want a permit")
	}
	if p, wait := l.TryAcquire(epoch.Add(61 * time.Second)); p != nil || wait != time.Second {
		t.Fatalf("second call at +61s: permit %v wait %v; want 1s", p, wait)
	}
}

func TestReleaseGivesBackWithoutStamp(t *testing.T) {
	t.Parallel()
	l := NewTenant(clockwork.NewFakeClockAt(epoch)).Add("offboard", []Window{{Count: 1, Length: time.Hour}})
	p, _ := l.TryAcquire(epoch)
	p.Release()
	p.Complete(epoch) // ignored: the permit is spent
	if p2, _ := l.TryAcquire(epoch); p2 == nil {
		t.Fatal("a released permit still holds its place")
	}
}

func TestPauseStopsEveryAPI(t *testing.T) {
	t.Parallel()
	tn := NewTenant(clockwork.NewFakeClockAt(epoch))
	off := tn.Add("offboard", Default())
	mach := tn.Add("machines", Default())
	tn.Pause(epoch, 30*time.Second)
	tn.Pause(epoch, 5*time.Second) // shorter: must not shorten the pause
	for _, l := range []*Limiter{off, mach} {
		if p, wait := l.TryAcquire(epoch.Add(10 * time.Second)); p != nil || wait != 20*time.Second {
			t.Fatalf("%s during pause: permit %v wait %v; want 20s", l.api, p, wait)
		}
		if p, _ := l.TryAcquire(epoch.Add(30 * time.Second)); p == nil {
			t.Fatalf("%s after pause: no permit", l.api)
		}
	}
}

func TestRemaining(t *testing.T) {
	t.Parallel()
	l := NewTenant(clockwork.NewFakeClockAt(epoch)).Add("offboard", []Window{{5, time.Second}, {8, time.Minute}})
	for range 4 {
		p, _ := l.TryAcquire(epoch)
		p.Complete(epoch)
	}
	held, _ := l.TryAcquire(epoch)
	if got := l.Remaining(epoch); got[0] != 0 || got[1] != 3 {
		t.Fatalf("Remaining = %v, want [0 3]", got)
	}
	held.Release()
	if got := l.Remaining(epoch.Add(time.Second)); got[0] != 5 || got[1] != 4 {
		t.Fatalf("Remaining a second later = %v, want [5 4]", got)
	}
}

// TestOverdrawnAfterALowerWindow: a counter's window lowered below the
// permits held and the calls made is overdrawn until enough permits are
// given back, and not before it is lowered.
func TestOverdrawnAfterALowerWindow(t *testing.T) {
	t.Parallel()
	l := NewTenant(clockwork.NewFakeClockAt(epoch)).AddCounter("created", time.Hour)
	l.SetWindows([]Window{{Count: 10, Length: time.Hour}})
	made, _ := l.TryAcquire(epoch)
	made.Complete(epoch)
	a, _ := l.TryAcquire(epoch)
	b, _ := l.TryAcquire(epoch)
	if l.Overdrawn(epoch) {
		t.Fatal("overdrawn at 3 of 10")
	}
	l.SetWindows([]Window{{Count: 2, Length: time.Hour}})
	if !l.Overdrawn(epoch) {
		t.Fatal("not overdrawn at 3 of 2")
	}
	b.Release()
	if l.Overdrawn(epoch) {
		t.Fatal("overdrawn at 2 of 2")
	}
	a.Release()
	if got := l.Remaining(epoch); got[0] != 1 {
		t.Fatalf("Remaining = %v, want [1]", got)
	}
}

// timerClock is a fake clock that tells the length of each timer set on
// it, once set.
type timerClock struct {
	*clockwork.FakeClock
	set chan time.Duration
}

func (c timerClock) NewTimer(d time.Duration) clockwork.Timer {
	timer := c.FakeClock.NewTimer(d)
	c.set <- d
	return timer
}

// TestAcquireWaitsForWindowAndPause: a waiter waits for its place in the
// window, and a pause that comes meanwhile has it wait to the pause's
// end. The pause wakes the waiter, which stops its timer for the place
// and sets one for the end; until it runs, the fake clock still counts
// the first, so the test waits for the timer of the pause's length to be
// set before it moves the clock: moved between the waiter's look and its
// timer, the clock would have the timer fire a minute late.
func TestAcquireWaitsForWindowAndPause(t *testing.T) {
	t.Parallel()
	clock := timerClock{clockwork.NewFakeClockAt(epoch), make(chan time.Duration, 8)}
	tn := NewTenant(clock)
	l := tn.Add("offboard", []Window{{Count: 1, Length: time.Minute}})
	ctx := t.Context()
	p, err := l.Acquire(ctx)
	if err != nil {
		t.Fatal(err)
	}
	p.CompleteNow()

	got := make(chan time.Time, 1)
	go func() {
		p, err := l.Acquire(ctx)
		if err != nil {
			got <- time.Time{}
			return
		}
		p.Release()
		got <- clock.Now()
	}()
	if d := testwait.For(t, clock.set, 10*time.Second, "the waiter's timer"); d != time.Minute {
		t.Fatalf("the waiter set a timer of %v, want 1m: its place frees then", d)
	}
	tn.Pause(clock.Now(), 2*time.Minute) // wakes the waiter, which must wait longer now
	if d := testwait.For(t, clock.set, 10*time.Second, "the waiter's timer after the pause"); d != 2*time.Minute {
		t.Fatalf("the waiter woken by the pause set a timer of %v, want 2m", d)
	}
	clock.Advance(time.Minute)
	select {
	case at := <-got:
		t.Fatalf("acquired at %v, inside the pause", at.Sub(epoch))
	default:
	}
	testwait.Waiters(t, clock.FakeClock, 1)
	clock.Advance(time.Minute)
	if at := testwait.For(t, got, 10*time.Second, "the waiter's permit"); at.Sub(epoch) != 2*time.Minute {
		t.Fatalf("acquired at +%v, want +2m", at.Sub(epoch))
	}
}

func TestSpreadPacesCalls(t *testing.T) {
	t.Parallel()
	l := NewTenant(clockwork.NewFakeClockAt(epoch)).AddSpread("offboard", Default(), 2)
	for i := range 2 {
		p, _ := l.TryAcquire(epoch)
		if p == nil {
			t.Fatalf("call %d of the burst refused", i)
		}
		p.Complete(epoch)
	}
	p, wait := l.TryAcquire(epoch)
	if p != nil || wait < 599*time.Millisecond || wait > 601*time.Millisecond {
		t.Fatalf("third call: permit %v wait %v; want about 600ms (100/1m)", p, wait)
	}
	if p, _ := l.TryAcquire(epoch.Add(wait)); p == nil {
		t.Fatal("no permit once the bucket refilled")
	}
}

func TestAcquireLowLeavesHalf(t *testing.T) {
	t.Parallel()
	clock := clockwork.NewFakeClockAt(epoch)
	l := NewTenant(clock).Add("machineactions", []Window{{Count: 10, Length: time.Minute}})
	ctx, cancel := context.WithTimeout(t.Context(), time.Second)
	defer cancel()
	for i := range 5 {
		p, err := l.AcquireLow(ctx)
		if err != nil {
			t.Fatalf("low call %d: %v", i, err)
		}
		p.CompleteNow()
	}
	short, cancelShort := context.WithTimeout(t.Context(), 20*time.Millisecond)
	defer cancelShort()
	if _, err := l.AcquireLow(short); err == nil {
		t.Fatal("a sixth low call took quota from the reserved half")
	}
	for i := range 5 {
		if p, _ := l.TryAcquire(clock.Now()); p == nil {
			t.Fatalf("normal call %d refused: the low calls took its half", i)
		}
	}
}

func TestAcquireHonoursContext(t *testing.T) {
	t.Parallel()
	clock := clockwork.NewFakeClockAt(epoch)
	l := NewTenant(clock).Add("offboard", []Window{{Count: 1, Length: time.Hour}})
	p, _ := l.Acquire(t.Context())
	defer p.Release()
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() {
		_, err := l.Acquire(ctx)
		done <- err
	}()
	cancel()
	if err := testwait.For(t, done, 10*time.Second, "Acquire to return after the cancel"); !errors.Is(err, context.Canceled) {
		t.Fatalf("Acquire after cancel = %v, want context.Canceled", err)
	}
}

// TestPropertyNoWindowExceeded drives random arrivals, latencies, concurrency
// and 429 pauses through ten simulated hours per seed, then checks every
// window the server could draw.
func TestPropertyNoWindowExceeded(t *testing.T) {
	t.Parallel()
	windows := [][]Window{
		Default(),
		{{10, 2 * time.Second}, {40, 20 * time.Second}},
		{{3, time.Second}, {5, 3 * time.Second}, {50, time.Minute}},
	}
	for seed := range uint64(6) {
		rng := rand.New(rand.NewPCG(seed, 42))
		ws := windows[int(seed)%len(windows)]
		horizon := 10 * time.Hour
		// Arrivals: bursts and gaps at random, half again what the windows
		// sustain, so the limiter spends hours both saturated and idle.
		var arrivals []time.Duration
		rate := 1e9
		for _, w := range ws {
			rate = min(rate, float64(w.Count)/w.Length.Seconds()*1.5)
		}
		for at := time.Duration(0); at < horizon; {
			at += time.Duration(rng.ExpFloat64() / rate * float64(time.Second))
			if rng.IntN(1000) == 0 {
				at += time.Duration(rng.IntN(int(ws[len(ws)-1].Length)))
			}
			arrivals = append(arrivals, at)
		}
		burst := 0
		if seed%2 == 1 {
			burst = 1 + rng.IntN(10)
		}
		// Half the runs take their permits ahead of their places, as the
		// worker's loop does, and send each call at its NotBefore.
		var ahead time.Duration
		if seed >= 3 {
			ahead = time.Duration(1+rng.IntN(50)) * time.Millisecond
		}
		res := simulate(ws, simConfig{
			burst:       burst,
			arrivals:    arrivals,
			concurrency: 1 + rng.IntN(8),
			latency:     func() time.Duration { return time.Duration(rng.IntN(300)) * time.Millisecond },
			pauseEvery:  500,
			ahead:       ahead,
			rng:         rng,
		})
		if res.completed != len(arrivals) {
			t.Fatalf("seed %d: %d of %d calls completed", seed, res.completed, len(arrivals))
		}
		for _, w := range ws {
			if n := worstWindow(res.calls, w); n > w.Count {
				t.Fatalf("seed %d: %d calls could fall in one %v window, limit %d", seed, n, w.Length, w.Count)
			}
		}
		t.Logf("seed %d: %d calls over %v, concurrency %d, permits %v ahead", seed, len(arrivals), res.end.Round(time.Second), res.concurrency, ahead)
	}
}

// TestDrainIsTight checks the schedule a backlog gets against the ideal one.
func TestDrainIsTight(t *testing.T) {
	t.Parallel()
	ideal := idealFinish(Default(), 3000)
	if ideal != 74*time.Minute {
		t.Fatalf("ideal drain of 3000 under 100/1m+1500/1h = %v, want 74m", ideal)
	}
	res := drain(Default(), 3000, 4, 50*time.Millisecond, 0)
	if eff := float64(ideal) / float64(res.end); eff < 0.99 || eff > 1 {
		t.Fatalf("drain efficiency %.4f, want in [0.99, 1]", eff)
	}
	// Spreading costs a little speed but never breaks a window.
	spread := drain(Default(), 3000, 4, 50*time.Millisecond, 10)
	if eff := float64(ideal) / float64(spread.end); eff < 0.95 || eff > 1 {
		t.Fatalf("drain efficiency with spreading %.4f, want in [0.95, 1]", eff)
	}
	for _, w := range Default() {
		if n := worstWindow(spread.calls, w); n > w.Count {
			t.Fatalf("spread drain: %d calls in one %v window", n, w.Length)
		}
	}
}

// BenchmarkDrain prints the drain efficiency (ideal time / simulated time)
// of a 3000-request backlog under the documented limits, in simulated time,
// with 120ms per call and four calls in flight; with and without spreading.
func BenchmarkDrain(b *testing.B) {
	ideal := idealFinish(Default(), 3000)
	for _, burst := range []int{0, 10} {
		b.Run(fmt.Sprintf("burst=%d", burst), func(b *testing.B) {
			var res simResult
			for b.Loop() {
				res = drain(Default(), 3000, 4, 120*time.Millisecond, burst)
			}
			worst := 0
			for _, w := range Default() {
				worst = max(worst, worstWindow(res.calls, w)-w.Count)
			}
			b.ReportMetric(float64(ideal)/float64(res.end), "efficiency")
			b.ReportMetric(res.end.Minutes(), "sim-minutes")
			b.ReportMetric(ideal.Minutes(), "ideal-minutes")
			b.ReportMetric(float64(max(worst, 0)), "calls-over-limit")
		})
	}
}

func drain(ws []Window, n, concurrency int, latency time.Duration, burst int) simResult {
	return simulate(ws, simConfig{
		arrivals:    make([]time.Duration, n),
		concurrency: concurrency,
		latency:     func() time.Duration { return latency },
		burst:       burst,
	})
}

// idealFinish is when the n-th call can start at the earliest: the greedy
// schedule with zero latency, optimal for sliding windows.
func idealFinish(ws []Window, n int) time.Duration {
	starts := make([]time.Duration, n)
	for k := range starts {
		for _, w := range ws {
			if k >= w.Count {
				starts[k] = max(starts[k], starts[k-w.Count]+w.Length)
			}
		}
	}
	return starts[n-1]
}

type simCall struct{ sent, done time.Duration }

type simConfig struct {
	arrivals    []time.Duration // ascending
	concurrency int
	latency     func() time.Duration
	pauseEvery  int // every n-th answer is a 429 pausing the tenant, 0: never
	burst       int // spreading bucket, 0: none
	// ahead: permits are taken this long before their place frees
	// (TryAcquireAhead), and each call is sent at its NotBefore.
	ahead time.Duration
	rng   *rand.Rand
}

type simResult struct {
	calls       []simCall
	completed   int
	end         time.Duration
	concurrency int
}

type doneHeap []struct {
	at time.Duration
	i  int
}

func (h doneHeap) Len() int           { return len(h) }
func (h doneHeap) Less(i, j int) bool { return h[i].at < h[j].at }
func (h doneHeap) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *doneHeap) Push(x any) {
	*h = append(*h, x.(struct {
		at time.Duration
		i  int
	}))
}
func (h *doneHeap) Pop() any { old := *h; x := old[len(old)-1]; *h = old[:len(old)-1]; return x }

// simulate runs the limiter in simulated time as the worker uses it: a call
// takes a permit, its answer arrives after a latency, and the permit is
// completed at that moment. A 429 answer pauses the tenant and the call is
// retried, as the worker does.
func simulate(ws []Window, cfg simConfig) simResult {
	tn := NewTenant(clockwork.NewFakeClockAt(epoch))
	l := tn.AddSpread("offboard", ws, cfg.burst)
	var (
		now      time.Duration
		queue    int // calls arrived, not yet sent
		next     int // next arrival
		inflight = &doneHeap{}
		permits  = map[int]*Permit{}
		res      = simResult{concurrency: cfg.concurrency}
		answers  int
	)
	for res.completed < len(cfg.arrivals) {
		for next < len(cfg.arrivals) && cfg.arrivals[next] <= now {
			queue++
			next++
		}
		wait := time.Duration(-1)
		for queue > 0 && inflight.Len() < cfg.concurrency {
			p, w := l.TryAcquireAhead(epoch.Add(now), cfg.ahead)
			if p == nil {
				if w > 0 {
					wait = w - cfg.ahead
				}
				break
			}
			queue--
			i := len(res.calls)
			sent := now
			if nb := p.NotBefore(); !nb.IsZero() {
				if nb.Sub(epoch) > now+cfg.ahead {
					panic(fmt.Sprintf("a permit taken at %v for %v, more than %v ahead", now, nb.Sub(epoch), cfg.ahead))
				}
				sent = max(sent, nb.Sub(epoch))
			}
			res.calls = append(res.calls, simCall{sent: sent})
			permits[i] = p
			heap.Push(inflight, struct {
				at time.Duration
				i  int
			}{sent + cfg.latency(), i})
		}
		// Advance to the next event.
		at := time.Duration(1<<62 - 1)
		if next < len(cfg.arrivals) {
			at = cfg.arrivals[next]
		}
		if inflight.Len() > 0 {
			at = min(at, (*inflight)[0].at)
		}
		if wait > 0 {
			at = min(at, now+wait)
		}
		now = at
		for inflight.Len() > 0 && (*inflight)[0].at <= now {
			c := heap.Pop(inflight).(struct {
				at time.Duration
				i  int
			})
			permits[c.i].Complete(epoch.Add(c.at))
			delete(permits, c.i)
			res.calls[c.i].done = c.at
			answers++
			if cfg.pauseEvery > 0 && answers%cfg.pauseEvery == 0 {
				tn.Pause(epoch.Add(now), time.Duration(1+cfg.rng.IntN(30))*time.Second)
				queue++ // the throttled call goes back to the queue
				continue
			}
			res.completed++
		}
	}
	res.end = now
	return res
}

// worstWindow is the largest number of calls the server could have counted
// in one window, if it counts each call at any moment between its sending
// and its answer. For each call j, the calls sent before it whose answers
// came after sent_j - Length could share a window with it.
func worstWindow(calls []simCall, w Window) int {
	worst := 0
	for j := range calls {
		n := 1
		for i := j - 1; i >= 0; i-- {
			if calls[i].sent < calls[j].sent-w.Length-time.Second {
				break // latencies stay under a second
			}
			if calls[i].done > calls[j].sent-w.Length {
				n++
			}
		}
		worst = max(worst, n)
	}
	return worst
}

// TestWaitWithinLooksAheadWithoutHandingOutEarly: a caller that prepares
// its calls ahead learns a place frees within its lead, and how many, but
// gets no permit before the place is free, and the look ahead forgets no
// call still in the window.
func TestWaitWithinLooksAheadWithoutHandingOutEarly(t *testing.T) {
	t.Parallel()
	clock := clockwork.NewFakeClockAt(epoch)
	l := NewTenant(clock).Add("offboard", []Window{{Count: 2, Length: time.Second}})
	for range 2 {
		p, _ := l.TryAcquire(epoch)
		p.Complete(epoch) // both places free at +1s
	}
	clock.Advance(500 * time.Millisecond)
	now := clock.Now()
	if n := l.AvailableWithin(now, 600*time.Millisecond, 5); n != 2 {
		t.Errorf("AvailableWithin 600ms at +500ms = %d, want 2", n)
	}
	if n := l.AvailableWithin(now, 400*time.Millisecond, 5); n != 0 {
		t.Errorf("AvailableWithin 400ms at +500ms = %d, want 0", n)
	}
	if n := l.Available(now, 5); n != 0 {
		t.Errorf("Available at +500ms after a look ahead = %d, want 0: the look ahead dropped a call still in the window", n)
	}
	if err := l.WaitWithin(t.Context(), 600*time.Millisecond); err != nil {
		t.Fatalf("WaitWithin 600ms at +500ms: %v, want at once", err)
	}
	if p, wait := l.TryAcquire(now); p != nil || wait != 500*time.Millisecond {
		t.Fatalf("TryAcquire at +500ms: permit %v wait %v; want none for 500ms", p, wait)
	}

	woke := make(chan time.Time, 1)
	go func() {
		if err := l.WaitWithin(t.Context(), 100*time.Millisecond); err == nil {
			woke <- clock.Now()
		}
		close(woke)
	}()
	testwait.Waiters(t, clock, 1)
	clock.Advance(300 * time.Millisecond) // +800ms
	select {
	case at := <-woke:
		t.Fatalf("WaitWithin 100ms returned at +%v, want +900ms", at.Sub(epoch))
	default:
	}
	testwait.Waiters(t, clock, 1)
	clock.Advance(100 * time.Millisecond) // +900ms
	if at := testwait.For(t, woke, 10*time.Second, "WaitWithin 100ms to return"); at.Sub(epoch) != 900*time.Millisecond {
		t.Fatalf("WaitWithin 100ms returned at +%v, want +900ms", at.Sub(epoch))
	}
}

// TestPermitAheadLeavesAWaitersPlace: a caller that waits in Acquire for
// the next place (a retry, a request whose place went elsewhere) has it
// when it frees. A permit taken ahead (the loop's, for a request it
// fetched since) must not take that place 5 ms before: the waiter, woken
// as it frees, would find it gone every time, and wait behind every
// request fetched after it for as long as the backlog lasts. Once nobody
// waits, permits are taken ahead again.
func TestPermitAheadLeavesAWaitersPlace(t *testing.T) {
	t.Parallel()
	clock := clockwork.NewFakeClockAt(epoch)
	l := NewTenant(clock).Add("offboard", []Window{{Count: 1, Length: time.Second}})
	first, _ := l.TryAcquire(epoch)
	first.Complete(epoch) // its place frees at +1s
	clock.Advance(900 * time.Millisecond)
	got := make(chan *Permit, 1)
	go func() {
		p, err := l.Acquire(t.Context())
		if err != nil {
			p = nil
		}
		got <- p
	}()
	testwait.Waiters(t, clock, 1)
	clock.Advance(95 * time.Millisecond) // +995ms: the place frees in 5 ms
	if p, wait := l.TryAcquireAhead(clock.Now(), 5*time.Millisecond); p != nil {
		t.Fatalf("TryAcquireAhead took the place a waiter waits for (NotBefore +%v)", p.NotBefore().Sub(epoch))
	} else if wait != 0 {
		// The place that frees in 5 ms is the waiter's; the next comes
		// a window after its call ends: no time is known yet.
		t.Errorf("TryAcquireAhead with a waiter: wait %v, want 0", wait)
	}
	testwait.Waiters(t, clock, 1)
	clock.Advance(5 * time.Millisecond)
	p := testwait.For(t, got, 10*time.Second, "the waiter's permit")
	if p == nil {
		t.Fatal("the waiter got no permit when its place freed")
	}
	p.Complete(clock.Now()) // the next place frees at +2s
	clock.Advance(995 * time.Millisecond)
	if q, _ := l.TryAcquireAhead(clock.Now(), 5*time.Millisecond); q == nil || !q.NotBefore().Equal(epoch.Add(2*time.Second)) {
		t.Fatalf("TryAcquireAhead with nobody waiting, 5 ms before the place frees: %v; want a permit for +2s", q)
	}
}
