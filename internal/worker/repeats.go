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
// those quiet for repeatEvery give their place (dropQuietLocked), and if
// none is, any new one shares a last key with the others of its message
// (fixed text, a few in all): a line of another kind, such as the
// credentials refused, is still told at once.
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
// fixed text or causeOf, never a request's own text. A nil repeats (a
// tenant not served here) logs every line.
func (r *repeats) log(log *zap.Logger, lvl zapcore.Level, key, msg string, fields ...zap.Field) {
	say, left, over := true, 0, time.Duration(0)
	if r != nil {
		say, left, over = r.count(key, msg)
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

// count notes one line of key and msg: whether to log it, and if so how
// many were left out since the last one logged, over how long.
func (r *repeats) count(key, msg string) (say bool, left int, over time.Duration) {
	now := r.clock.Now()
	r.mu.Lock()
	defer r.mu.Unlock()
	p := r.last[key]
	if p == nil {
		if len(r.last) >= maxCauses {
			r.dropQuietLocked(now)
		}
		if len(r.last) >= maxCauses {
			key = "\x00more:" + msg
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

// dropQuietLocked forgets the causes with no line left out whose last
// was logged repeatEvery ago or more (or ahead of a clock stepped back):
// their next line is logged at once, with no count, as a new cause's.
// They kept their place for the process's life, and past maxCauses every
// new cause of a message shared one key.
func (r *repeats) dropQuietLocked(now time.Time) {
	for key, p := range r.last {
		if p.left == 0 && (now.Sub(p.said) >= repeatEvery || now.Before(p.said)) {
			delete(r.last, key)
		}
	}
}

// causeOf is the key of an error's lines: its text with every run of
// digits and hexadecimal digits of 8 or more (sequences, ids, ports,
// times) made one mark, so that the same failure of two requests is one
// cause, and cut at 200 bytes.
func causeOf(msg string, err error) string {
	text := msg
	if err != nil {
		text += ": " + err.Error()
	}
	b := make([]byte, 0, min(len(text), 200))
	for i := 0; i < len(text) && len(b) < 200; {
		j := i
		for j < len(text) && isHex(text[j]) {
			j++
		}
		if run := text[i:j]; j > i && (j-i >= 8 || allDigits(run)) {
			b = append(b, '#')
			i = j
			continue
		}
		if j == i {
			j = i + 1
		}
		b = append(b, text[i:j]...)
		i = j
	}
	return string(b)
}

func isHex(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}

func allDigits(s string) bool {
	for i := range len(s) {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}
