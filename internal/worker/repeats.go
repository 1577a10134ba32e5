package worker

import (
	"sync"
	"time"

	"github.com/jonboulle/clockwork"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// repeatEvery is how often a tenant's line of one cause is logged at most
// when it can come once per request and attempt.
const repeatEvery = time.Minute

// maxCauses bounds the causes a tenant's repeats keeps apart; past it,
// any new one shares a last key.
const maxCauses = 64

// repeats bounds the lines a failure makes when it meets every request
// and every attempt: a 5xx storm, a journal gone, NATS away. With 1000
// tenants, a line each was tens of thousands a minute. Per tenant and
// cause, the first line is logged, then at most one per repeatEvery,
// with the count of those left out since the last one ("repeated") and
// how long that was ("repeated_over"); the ones left out go to debug,
// whole.
type repeats struct {
	clock clockwork.Clock
	mu    sync.Mutex
	last  map[string]*repeated
}

type repeated struct {
	said time.Time
	left int
}

func newRepeats(clock clockwork.Clock) *repeats {
	return &repeats{clock: clock, last: map[string]*repeated{}}
}

// log logs msg with fields at lvl unless a line of the same key was
// logged less than repeatEvery ago; then at debug. key names the cause:
// fixed text, never a request's own text. A nil repeats (a
// tenant not served here) logs every line.
func (r *repeats) log(log *zap.Logger, lvl zapcore.Level, key, msg string, fields ...zap.Field) {
	say, left, over := true, 0, time.Duration(0)
	if r != nil {
		say, left, over = r.count(key)
	}
	if !say {
		log.Debug(msg, fields...)
		return
	}
	if left > 0 {
		fields = append(fields, zap.Int("repeated", left), zap.Duration("repeated_over", over))
	}
	if ce := log.Check(lvl, msg); ce != nil {
		ce.Write(fields...)
	}
}

// count notes one line of key: whether to log it, and if so how many
// were left out since the last one logged, over how long.
func (r *repeats) count(key string) (say bool, left int, over time.Duration) {
	now := r.clock.Now()
	r.mu.Lock()
	defer r.mu.Unlock()
	p := r.last[key]
	if p == nil {
		if len(r.last) >= maxCauses {
			key = "\x00more"
			p = r.last[key]
		}
		if p == nil {
			p = &repeated{}
			r.last[key] = p
		}
	}
	// A clock stepped back logs at once rather than never.
	if !p.said.IsZero() && now.Sub(p.said) < repeatEvery && !now.Before(p.said) {
		p.left++
		return false, 0, 0
	}
	left, over = p.left, now.Sub(p.said)
	p.said, p.left = now, 0
	return true, left, over
}
