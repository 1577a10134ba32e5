package worker

import (
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/jonboulle/clockwork"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"
)

// TestRepeatsLogOnceAMinuteWithACount: the first line of a cause is
// logged at its level, the next ones within the minute at debug, and the
// first after the minute at its level again, counting those left out.
// Another cause is logged at once, and a clock stepped back logs rather
// than holding lines back.
func TestRepeatsLogOnceAMinuteWithACount(t *testing.T) {
	t.Parallel()
	clock := clockwork.NewFakeClock()
	core, logs := observer.New(zap.DebugLevel)
	log, r := zap.New(core), newRepeats(clock)
	for i := range 10 {
		r.log(log, zap.WarnLevel, "a", "API call failed", zap.Int("i", i))
		clock.Advance(5 * time.Second)
	}
	r.log(log, zap.WarnLevel, "b", "other cause")
	clock.Advance(15 * time.Second) // 65 s after the first
	r.log(log, zap.WarnLevel, "a", "API call failed", zap.Int("i", 10))
	clock.Advance(-time.Hour)
	r.log(log, zap.WarnLevel, "a", "API call failed", zap.Int("i", 11))

	var warned []string
	debug := 0
	for _, l := range logs.All() {
		switch l.Level {
		case zap.WarnLevel:
			warned = append(warned, fmt.Sprint(l.Message, l.ContextMap()))
		case zap.DebugLevel:
			debug++
		}
	}
	want := []string{
		"API call failedmap[i:0]",
		"other causemap[]",
		"API call failedmap[i:10 repeated:9 repeated_over:1m5s]",
		"API call failedmap[i:11]",
	}
	if fmt.Sprint(warned) != fmt.Sprint(want) {
		t.Errorf("warnings %q, want %q", warned, want)
	}
	if debug != 9 {
		t.Errorf("%d lines at debug, want the 9 left out", debug)
	}
}

// TestCauseOfLeavesOutNumbers: two requests' same failure is one cause;
// another failure is another.
func TestCauseOfLeavesOutNumbers(t *testing.T) {
	t.Parallel()
	a := causeOf("left", errors.New("request id is being worked on by request 153 (1e5bc9d7e413ddd7902c2932e418702b84d0cc07)"))
	b := causeOf("left", errors.New("request id is being worked on by request 7 (0000000000000000000000000000000000000000)"))
	if a != b {
		t.Errorf("causes %q and %q, want one", a, b)
	}
	if c := causeOf("left", errors.New("budget journal of tenant contoso: deadline exceeded")); c == a {
		t.Errorf("another failure has the same cause %q", c)
	}
	if c := causeOf("left", errors.New(string(make([]byte, 10000)))); len(c) > 200 {
		t.Errorf("cause of %d bytes, want at most 200", len(c))
	}
}

// TestRepeatsKeepsItsCausesBounded: past maxCauses distinct causes, the
// new ones share one key, so a tenant's repeats cannot grow without end.
func TestRepeatsKeepsItsCausesBounded(t *testing.T) {
	t.Parallel()
	r := newRepeats(clockwork.NewFakeClock())
	for i := range 1000 {
		r.log(zap.NewNop(), zap.WarnLevel, fmt.Sprint("cause ", i), "line")
	}
	if n := len(r.last); n > maxCauses+1 {
		t.Errorf("%d causes kept, want at most %d", n, maxCauses+1)
	}
}

// TestRepeatsPastItsCausesTellsAnotherLineAtOnce: a tenant whose causes
// filled up (one failure's text varying past what causeOf folds) still
// logs the first line of another kind at once: the error saying its
// credentials were refused, which an operator must act on, was left at
// debug behind any line of another cause logged in the minute.
func TestRepeatsPastItsCausesTellsAnotherLineAtOnce(t *testing.T) {
	t.Parallel()
	core, logs := observer.New(zap.DebugLevel)
	log, r := zap.New(core), newRepeats(clockwork.NewFakeClock())
	for i := range maxCauses + 10 {
		r.log(log, zap.WarnLevel, fmt.Sprint("left: cause ", i), "request left for redelivery")
	}
	r.log(log, zap.ErrorLevel, "refused:unauthorized", "the tenant's credentials were refused")
	if n := logs.FilterLevelExact(zap.ErrorLevel).Len(); n != 1 {
		t.Errorf("%d lines at error, want the credentials refused told at once", n)
	}
}

// TestRepeatsTakesBackQuietCauses: the causes a tenant met once, quiet
// for longer than repeatEvery, give their place to new ones. They kept it
// for the process's life: a worker up for months that had met 64 causes
// told only one new cause a minute, any other new one at debug.
func TestRepeatsTakesBackQuietCauses(t *testing.T) {
	t.Parallel()
	clock := clockwork.NewFakeClock()
	core, logs := observer.New(zap.DebugLevel)
	log, r := zap.New(core), newRepeats(clock)
	for i := range maxCauses {
		r.log(log, zap.WarnLevel, fmt.Sprint("left: old cause ", i), "request left for redelivery")
	}
	clock.Advance(time.Hour)
	r.log(log, zap.WarnLevel, "left: new cause a", "request left for redelivery")
	r.log(log, zap.WarnLevel, "left: new cause b", "request left for redelivery")
	if n := logs.FilterLevelExact(zap.WarnLevel).Len(); n != maxCauses+2 {
		t.Errorf("%d lines at warn, want %d: each cause's first", n, maxCauses+2)
	}
	if n := len(r.last); n > maxCauses+1 {
		t.Errorf("%d causes kept, want at most %d", n, maxCauses+1)
	}
}
