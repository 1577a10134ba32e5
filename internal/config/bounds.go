package config

import (
	"cmp"
	"errors"
	"fmt"
	"math"
	"slices"
	"strings"
	"time"

	"github.com/contoso-secops/mde-offboard/internal/limiter"
	"github.com/contoso-secops/mde-offboard/internal/mde"
)

// DefaultMaxInFlight is a tenant's maxInFlight when the file sets none.
const DefaultMaxInFlight = 4

// maxInFlightFloor is the highest maxInFlight every tenant may set: the
// calls a minute the API documents (100/1m), which the default limits
// keep. A request holds its slot until its API calls are over, and a
// call under way counts in every window, so no more offboard calls are
// ever under way than the tightest offboard window's count: slots beyond
// it are never filled, and a number in the millions is a slip that would
// still size every sum of the tenants' slots (the HTTP connections kept).
// A tenant whose tightest offboard window holds more (a simulator's) may
// go up to that count.
var maxInFlightFloor = tightest(limiter.Default()).Count

// MaxInFlightCeiling is the highest maxInFlight any tenant may set,
// whatever its windows' counts. Each request under way holds a place of
// up to 0.1 MiB, so this many take a gigabyte; and the tenant's loop
// counts its free places one by one before each pull: under a window of
// a count near the largest int, a maxInFlight as large kept that loop
// counting for ever, a CPU spent and the stop never over, and the sum of
// two such tenants' places wrapped round to a negative.
const MaxInFlightCeiling = 10000

// MaxWindows is the most limits an API may have. The tenants' consumers
// carry their offboard limits in their metadata, which NATS refuses over
// 128 KiB: tens of thousands of limits passed --check-config, and the
// start failed on that refusal, naming no setting. Each call also looks
// at every window.
const MaxWindows = 100

// MinWindow is the shortest window a limit may have. The API counts calls
// per minute and per hour; a window of a few nanoseconds (100/1ns for
// 100/1m) lets every call through at once and meets the API's own limit
// with 429s. Time compressed 200 times (a benchmark) makes a minute 300ms.
const MinWindow = 100 * time.Millisecond

// MinTrackingInterval is the shortest tracking firstCheck, maxInterval
// and maxAge. A look is an HTTPS call of tens of milliseconds; a shorter
// interval (1ns, 5ms for 5m) keeps the tracker asking for quota without a
// pause, and a shorter maxAge ends every tracking before its first look.
const MinTrackingInterval = 100 * time.Millisecond

// MaxTrackingInterval is the longest tracking firstCheck and maxInterval:
// the interval between looks doubles, and doubled, a longer one wraps round
// to a negative Duration (a look due at once, again and again).
const MaxTrackingInterval = time.Duration(math.MaxInt64 / 2)

// tightest is the window with the smallest count.
func tightest(ws []limiter.Window) limiter.Window {
	return slices.MinFunc(ws, func(a, b limiter.Window) int { return cmp.Compare(a.Count, b.Count) })
}

// shortest is the window with the smallest length, of two such the one
// with the smaller count, which alone decides how many calls go: the one
// the spreading token bucket refills at (limiter.Tenant.AddSpread).
func shortest(ws []limiter.Window) limiter.Window {
	return slices.MinFunc(ws, func(a, b limiter.Window) int {
		return cmp.Or(cmp.Compare(a.Length, b.Length), cmp.Compare(a.Count, b.Count))
	})
}

// checkWindows refuses the windows of an API shorter than MinWindow.
func checkWindows(api string, ws []limiter.Window) []error {
	var errs []error
	for i, w := range ws {
		if w.Length < MinWindow {
			errs = append(errs, fmt.Errorf("limits.%s: limit %d of %d: its window is shorter than %s; the API counts calls per minute and per hour (100/1m)",
				api, i+1, len(ws), MinWindow))
		}
	}
	return errs
}

// checkAPILimits refuses the windows of an API on Microsoft's hosts that
// let more calls through than the API's documented limits (limiter.Default:
// 100 a minute, 1500 an hour): the API answers the rest 429, which stalls
// every other tool of the tenant too. A window of count c and length l
// lets at most c calls through in each stretch of l, so at most
// c × ⌈L/l⌉ in a documented window of length L; the tightest window
// bounds them. A simulator or a gateway of one's own (apiBaseURL) has
// limits of its own, which the file may follow.
func checkAPILimits(api string, ws []limiter.Window) error {
	var over []string
	for _, d := range limiter.Default() {
		within := slices.ContainsFunc(ws, func(w limiter.Window) bool {
			// Counted only for a count within d's: a larger one lets more
			// through in any case, and a product could wrap round.
			return w.Count <= d.Count && w.Length > 0 && w.Count*int((d.Length+w.Length-1)/w.Length) <= d.Count
		})
		if !within {
			over = append(over, fmt.Sprintf("%d calls in %s", d.Count, windowName(d.Length)))
		}
	}
	if len(over) == 0 {
		return nil
	}
	return fmt.Errorf("limits.%s: lets more than %s through, over the API's documented limits on Microsoft's hosts (100/1m and 1500/1h), which answers the rest 429 and stalls the tenant's other tools: keep within both",
		api, strings.Join(over, " and "))
}

// windowName is a documented window's length in words.
func windowName(d time.Duration) string {
	switch d {
	case time.Minute:
		return "a minute"
	case time.Hour:
		return "an hour"
	}
	return d.String()
}

// checkConcurrency checks maxInFlight and spreadBurst against the
// tenant's offboard windows, once they are read, and sets maxInFlight's
// default.
func (t *Tenant) checkConcurrency() []error {
	var errs []error
	ws := t.Resolved.Windows[mde.APIOffboard]
	switch {
	case t.MaxInFlight < 0:
		errs = append(errs, errors.New("maxInFlight must not be negative"))
	case len(ws) > 0 && t.MaxInFlight > max(maxInFlightFloor, tightest(ws).Count):
		errs = append(errs, fmt.Errorf("maxInFlight is more than %d, the count of the tightest offboard limit (at least the documented 100 a minute): a call under way counts in every window, so more requests never have their calls under way at once",
			max(maxInFlightFloor, tightest(ws).Count)))
	case t.MaxInFlight > MaxInFlightCeiling:
		errs = append(errs, fmt.Errorf("maxInFlight is more than %d, the most a tenant may have under way whatever its limits", MaxInFlightCeiling))
	case t.MaxInFlight == 0:
		t.MaxInFlight = DefaultMaxInFlight
	}
	switch {
	case t.SpreadBurst < 0:
		errs = append(errs, errors.New("spreadBurst must not be negative"))
	case len(ws) > 0 && t.SpreadBurst > shortest(ws).Count:
		// The bucket refills at the shortest window's rate; a burst of
		// more than its count would let the whole window go at once.
		errs = append(errs, fmt.Errorf("spreadBurst is more than %d, the count of the shortest offboard limit: a larger burst spreads nothing",
			shortest(ws).Count))
	}
	return errs
}

// check sets the tracking's defaults and refuses an interval
// outside MinTrackingInterval and MaxTrackingInterval, and a maxAge
// shorter than MinTrackingInterval (tracking.maxAge's longest is the
// ledger's TTL, a flag: the worker checks it), or not longer than
// firstCheck.
func (tr *Tracking) check() []error {
	if tr.FirstCheck == 0 {
		tr.FirstCheck = Duration(time.Minute)
	}
	if tr.MaxInterval == 0 {
		tr.MaxInterval = Duration(time.Hour)
	}
	if tr.MaxAge == 0 {
		tr.MaxAge = Duration(7 * 24 * time.Hour)
	}
	var errs []error
	for _, d := range []struct {
		name string
		v    Duration
		max  time.Duration
	}{
		{"firstCheck", tr.FirstCheck, MaxTrackingInterval},
		{"maxInterval", tr.MaxInterval, MaxTrackingInterval},
		{"maxAge", tr.MaxAge, math.MaxInt64},
	} {
		switch {
		case time.Duration(d.v) < MinTrackingInterval:
			errs = append(errs, fmt.Errorf("tracking.%s is shorter than %s: a look at an action is an API call; write minutes or hours, like 1m", d.name, MinTrackingInterval))
		case time.Duration(d.v) > d.max:
			errs = append(errs, fmt.Errorf("tracking.%s is longer than %s: the interval between looks doubles, and would overflow", d.name, d.max))
		}
	}
	if len(errs) == 0 && tr.FirstCheck >= tr.MaxAge {
		// An action is given up at maxAge without a look, and no look
		// is due later: none would ever be looked at, each given up
		// Pending whatever the API says of it.
		errs = append(errs, errors.New("tracking.firstCheck is not shorter than tracking.maxAge: an action is given up at maxAge without a look, so none would be looked at (firstCheck is 1m unless set)"))
	}
	return errs
}
