package limiter

import (
	"errors"
	"fmt"
	"time"
)

// offset bounds this process's clock minus the journal server's, from the
// server's timestamps of journal entries. An entry reaches this process
// after the server stored it, so the offset is at most the local receive
// time minus the server's timestamp (hi). An entry this process wrote was
// written before the server stored it, so the offset is at least its
// written time minus the server's timestamp (lo). Each bound comes from the
// latest entry that gives one: old entries read at the start only give a
// loose bound, never a false alarm.
type offset struct {
	lo, hi         time.Duration
	haveLo, haveHi bool
}

// estimate is the offset closest to zero within the bounds: latency alone
// never shows as an offset.
func (o offset) estimate() time.Duration {
	switch {
	case o.haveLo && o.haveHi && o.lo > o.hi: // bounds from moments apart, the clock moved in between
		return (o.lo + o.hi) / 2
	case o.haveLo && o.lo > 0:
		return o.lo
	case o.haveHi && o.hi < 0:
		return o.hi
	}
	return 0
}

// ObserveStamp takes the journal server's timestamp of an entry the feed
// delivers now (before Deliver). When this process's clock turns out to
// be off the server's by more than half the margin, it makes no call
// until it is back within it: the others read its times with only the
// margin for skew, and it reads theirs the same way, so two processes
// may disagree by the margin at most: one ahead by half of it, one
// behind by half.
func (s *Shared) ObserveStamp(ev Event, server time.Time) {
	s.mu.Lock()
	s.lookLocked()
	received := s.looked
	was := s.skewedLocked()
	s.skew.hi, s.skew.haveHi = received.Sub(server), true
	if ev.Writer == s.opts.Writer && ev.Written != 0 {
		s.skew.lo, s.skew.haveLo = time.Unix(0, ev.Written).Sub(server), true
		if ev.Gen == s.steps {
			s.stepBy = 0 // written after the last step: the bounds measure it
		}
	}
	s.metrics.clockOffset.Set(s.skew.estimate().Seconds())
	skewed := s.skewedLocked()
	var tenants []*Tenant
	if was != skewed {
		s.signalLocked()
		if !skewed {
			tenants = s.tenantsLocked()
		}
	}
	s.mu.Unlock()
	wake(tenants)
}

// skewedLocked says whether calls must wait for the clock: it is off the
// server's by more than half the margin, or it was stepped and not
// measured since.
func (s *Shared) skewedLocked() bool {
	return s.stepBy != 0 || s.offLocked()
}

// offLocked says whether the clock is off the server's by more than half
// the margin, as last measured.
func (s *Shared) offLocked() bool {
	return s.skew.estimate().Abs() > s.opts.Margin/2
}

// lookLocked reads the wall clock and looks for a step since the last
// reading: the wall clock moved by more (or less) than the monotonic
// clock, by more than half the margin. A step (an NTP step, a
// hypervisor's time sync) makes every time this process compares with
// the wall clock, the other replicas' calls and pauses from the journal,
// wrong by its size, and the offset measured before it stale. Calls then
// wait until an entry this process writes after the step (a probe, asked
// for at once; after by its Event.Gen) measures the clock again: the clock offset check then
// decides, and the journal's times are right again as soon as the clock
// is. Without a monotonic reading (a fake clock) there is no step to see.
func (s *Shared) lookLocked() {
	now := s.opts.Wall.Now()
	if last := s.looked; !last.IsZero() {
		if step := now.Round(0).Sub(last.Round(0)) - now.Sub(last); step.Abs() > max(s.opts.Margin/2, minStep) {
			if s.stepBy == 0 {
				s.drift = s.skew.estimate() // where it was, as last measured
			}
			s.drift += step
			s.stepBy = step
			s.steps++
			s.skew = offset{}
			select {
			case s.probe <- struct{}{}:
			default:
			}
		}
	}
	s.looked = now
}

// minStep is the least step lookLocked sees: the two readings of one
// time.Now differ by a little.
const minStep = 10 * time.Millisecond

// Stamp is what this process writes in an entry: when, by its wall clock
// (Event.Written), and how many steps of it it had seen (Event.Gen). An
// entry written before a step arrives after it, and its time, from either
// side of the step, tells nothing of the order: its count does.
func (s *Shared) Stamp() (written int64, gen uint64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.lookLocked()
	return s.looked.UnixNano(), s.steps
}

// behind is how far this process's clock may be behind the journal
// server's: the offset measured, when behind, or, while a step is not
// measured since, the offset measured before it moved by the steps
// since (drift). Zero when neither. A pause written for the others is
// written this much later; longer, it is only safer.
func (s *Shared) behind() time.Duration {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.lookLocked() // a step since the last look is seen now
	return s.behindLocked()
}

func (s *Shared) behindLocked() time.Duration {
	b := max(-s.skew.estimate(), 0)
	if s.stepBy != 0 {
		// Not the last step alone: two steps back seen before a probe
		// measured the first are the clock behind by both, and a step
		// back that set right a clock found ahead leaves it right.
		b = max(b, -s.drift)
	}
	return b
}

// toServer is what this process's clock reads short of the journal
// server's: how far it may be behind (behind), or, when it is measured
// ahead, minus that. Measured ahead, the estimate is at most how far it
// is: an entry of this process's was written before the server stored
// it. So a cap counted from the clock plus this is never short of the
// server's time, and a clock found hours ahead does not stretch it by
// as much.
func (s *Shared) toServer() time.Duration {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.lookLocked()
	if b := s.behindLocked(); b > 0 || s.stepBy != 0 {
		// Stepped and not measured since, the clock is not taken as
		// ahead: an entry of this process's written before the step may
		// still bring the bounds from before it.
		return b
	}
	return -max(s.skew.estimate(), 0)
}

// stepsSeen is how many steps of the wall clock this process has seen.
func (s *Shared) stepsSeen() uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.steps
}

// ProbeNow tells when the clock was seen stepped: a probe written then
// measures it again.
func (s *Shared) ProbeNow() <-chan struct{} { return s.probe }

// ClockOffset is how far this process's clock is ahead of the journal
// server's (negative: behind), as far as the journal's entries tell.
func (s *Shared) ClockOffset() time.Duration {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.skew.estimate()
}

// ClockOff says whether this process's clock is off the journal server's
// by more than half the margin, as last measured: no call starts until it
// is measured within. A step seen, which a probe measures within a
// second or so, does not count.
func (s *Shared) ClockOff() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.offLocked()
}

// LookAtClock looks for a step of the wall clock since the last look (a
// step seen stops calls and asks for a probe, ProbeNow) and reports
// whether calls wait for the clock. Every use of the clock looks too;
// this is for a process that makes none, its calls held while its clock
// is off, which must see the clock set right: while they wait, a probe
// measures it again.
func (s *Shared) LookAtClock() (waiting bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.lookLocked()
	return s.skewedLocked()
}

// mayCall reports whether calls may start: the feed has caught up and the
// clock is within half the margin.
func (s *Shared) mayCall() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.lookLocked()
	return s.ready && !s.held && !s.skewedLocked()
}

// wallRight reports whether the wall clock places the other processes'
// times where they are: the feed has caught up (the clock is measured
// then) and the clock is within half the margin, not stepped since.
func (s *Shared) wallRight() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.lookLocked()
	return s.ready && !s.skewedLocked()
}

// Healthy returns why this process may not start calls, or nil.
func (s *Shared) Healthy() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.ready {
		return errors.New("the quota journal is still being read")
	}
	if s.held {
		return fmt.Errorf("the %s's feed was cut off: no call starts until its stream is found the same", s.opts.Name)
	}
	if s.remade != nil {
		return s.remade // every write fails until a restart
	}
	s.lookLocked()
	if s.stepBy != 0 {
		return fmt.Errorf("the clock was stepped by %v: no call starts until the NATS server's time measures it again (a probe of the quota journal)", s.stepBy.Round(time.Millisecond))
	}
	if s.skewedLocked() {
		return fmt.Errorf("the clock is %v off the NATS server's, more than half the quota margin %v: no call starts", s.skew.estimate(), s.opts.Margin)
	}
	return nil
}
