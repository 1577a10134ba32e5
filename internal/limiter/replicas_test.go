package limiter

import (
	"context"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"github.com/jonboulle/clockwork"
)

// TestReplicasNeverExceedAnyWindow runs three replicas over one journal,
// with odd window sets (one window only, equal lengths, a longer window
// with a smaller count, given in either order), calls under way for up
// to 3 s, permits taken ahead of their places, given back unsent, 429
// pauses and restarts that read the journal back. Over all replicas, no
// window of any configured length holds more starts, or more answers,
// than its count.
func TestReplicasNeverExceedAnyWindow(t *testing.T) {
	t.Parallel()
	sets := [][]Window{
		{{1, time.Hour}},
		{{3, 10 * time.Second}, {3, 10 * time.Second}},
		{{20, time.Minute}, {5, time.Hour}},
		{{50, time.Hour}, {4, 10 * time.Second}},
		{{4, 10 * time.Second}, {2, 10 * time.Second}, {30, 5 * time.Minute}},
		{{1000, time.Second}},
	}
	for si, ws := range sets {
		for _, margin := range []time.Duration{0, 500 * time.Millisecond} {
			sim := newReplicaSim(t, ws, margin, uint64(si))
			for range 20000 {
				sim.step()
			}
			for _, w := range ws {
				if n := mostWithin(sim.starts, w.Length); n > w.Count {
					t.Errorf("%v, margin %v: %d calls start in one %v window", ws, margin, n, w)
				}
				if n := mostWithin(sim.ends, w.Length); n > w.Count {
					t.Errorf("%v, margin %v: %d calls answered in one %v window", ws, margin, n, w)
				}
			}
		}
	}
}

// replicaSim is three replicas of one tenant over a memJournal, on one
// fake clock.
type replicaSim struct {
	t            *testing.T
	rng          *rand.Rand
	clock        *clockwork.FakeClock
	j            *memJournal
	ws           []Window
	margin       time.Duration
	ss           []*Shared
	ls           []*Limiter
	under        [][]simUnderWay
	starts, ends []time.Time
}

// simUnderWay is a call sent at start whose answer comes at end.
type simUnderWay struct {
	p          *Permit
	start, end time.Time
}

const simLease = 10 * time.Second

func newReplicaSim(t *testing.T, ws []Window, margin time.Duration, seed uint64) *replicaSim {
	t.Helper()
	s := &replicaSim{
		t: t, rng: rand.New(rand.NewPCG(seed, uint64(margin))), clock: clockwork.NewFakeClockAt(epoch),
		j: &memJournal{last: map[string]uint64{}, keep: true}, ws: ws, margin: margin, under: make([][]simUnderWay, 3),
	}
	for range 3 {
		sh, l := s.j.process(t, s.clock, margin, simLease, ws)
		s.ss, s.ls = append(s.ss, sh), append(s.ls, l)
	}
	return s
}

// step lets one replica at random end its calls answered by now, maybe
// restart, pause or start a call, and moves the clock on.
func (s *replicaSim) step() {
	now, r := s.clock.Now(), s.rng.IntN(3)
	s.answer(r, now)
	if s.rng.IntN(3000) == 0 {
		// Killed: its calls under way never end, and count until due;
		// the new process reads the journal back.
		for _, c := range s.under[r] {
			s.ends = append(s.ends, c.p.Due())
		}
		s.under[r] = nil
		s.ss[r], s.ls[r] = s.j.restart(s.t, s.clock, s.margin, simLease, s.ws)
	}
	if s.rng.IntN(50) == 0 {
		s.ls[r].tenant.Pause(now, time.Duration(s.rng.IntN(3000))*time.Millisecond)
	}
	if len(s.under[r]) < 4 {
		s.start(r, now)
	}
	if s.rng.IntN(5) == 0 {
		flush(s.t, s.ss[r])
	}
	d := time.Duration(s.rng.IntN(200)) * time.Millisecond
	if s.rng.IntN(500) == 0 {
		d = time.Duration(s.rng.IntN(600)) * time.Second
	}
	s.clock.Advance(d)
}

// answer completes replica r's calls answered by now. A call is
// cancelled at its due time: the server saw it by then.
func (s *replicaSim) answer(r int, now time.Time) {
	var left []simUnderWay
	for _, c := range s.under[r] {
		if c.end.After(now) {
			left = append(left, c)
			continue
		}
		c.p.Complete(now)
		s.ends = append(s.ends, earliest(now, c.p.Due()))
	}
	s.under[r] = left
}

// start takes a permit (maybe ahead of its place), enters it, and sends
// the call at its place, or gives it back unsent.
func (s *replicaSim) start(r int, now time.Time) {
	p, _ := s.ls[r].TryAcquireAhead(now, time.Duration(s.rng.IntN(3))*time.Second)
	if p == nil {
		return
	}
	entered, err := p.TryRecord(s.t.Context())
	if err != nil {
		s.t.Fatal(err)
	}
	if !entered || s.rng.IntN(10) == 0 {
		p.Release() // never sent
		return
	}
	at := now
	if p.NotBefore().After(at) {
		at = p.NotBefore()
	}
	s.starts = append(s.starts, at)
	s.under[r] = append(s.under[r], simUnderWay{p: p, start: at, end: at.Add(time.Duration(s.rng.IntN(3000)) * time.Millisecond)})
}

// mostWithin is the most of ts within any interval of length l.
func mostWithin(ts []time.Time, l time.Duration) int {
	ts = slices.Clone(ts)
	slices.SortFunc(ts, func(a, b time.Time) int { return a.Compare(b) })
	most, i := 0, 0
	for k := range ts {
		for ts[k].Sub(ts[i]) >= l {
			i++
		}
		most = max(most, k-i+1)
	}
	return most
}

// restart starts a process that reads the whole journal back before it
// takes calls, as a restarted worker does.
func (j *memJournal) restart(t *testing.T, clock clockwork.Clock, margin, lease time.Duration, ws []Window) (*Shared, *Limiter) {
	t.Helper()
	s := NewShared(SharedOptions{Journal: j, Clock: clock, Margin: margin, Lease: lease})
	t.Cleanup(func() { s.Close(context.Background()) })
	l := s.Tenant("contoso").Add("offboard", ws)
	j.mu.Lock()
	for _, e := range j.history {
		s.Deliver(e.seq, e.tenant, e.ev)
	}
	j.readers = append(j.readers, s)
	if j.cursor == nil {
		j.cursor = map[*Shared]uint64{}
	}
	j.cursor[s] = j.seq
	end := j.seq
	j.mu.Unlock()
	s.MarkCaughtUp(end)
	return s, l
}
