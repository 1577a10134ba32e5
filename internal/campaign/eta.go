package campaign

import (
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/contoso-secops/mde-offboard/internal/config"
	"github.com/contoso-secops/mde-offboard/offboard"
)

// Window is one quota window: at most Count calls in any Length.
type Window struct {
	Count  int
	Length time.Duration
}

// DefaultWindows are the documented offboard limits of a tenant: 100 calls
// a minute and 1500 an hour.
var DefaultWindows = []Window{{100, time.Minute}, {1500, time.Hour}}

// ParseWindows reads "100/1m,1500/1h". Its error names the whole list,
// and the limit in it that is wrong when there are several. A window
// shorter than the tenants file allows (config.MinWindow) is refused: it
// is no tenant's limit, and a slip of the unit (5/1ms for 5/1m) read as
// one made every ETA 0s.
func ParseWindows(s string) ([]Window, error) {
	var ws []Window
	for part := range strings.SplitSeq(s, ",") {
		w, ok := parseWindow(part)
		switch {
		case ok && w.Length < config.MinWindow:
			return nil, fmt.Errorf("rate %s: limit %s has a window shorter than %s, which no tenant's limits have; want COUNT/DURATION, as 100/1m,1500/1h",
				offboard.Quote(s), offboard.Quote(strings.TrimSpace(part)), config.MinWindow)
		case ok:
			ws = append(ws, w)
		case part == s:
			return nil, fmt.Errorf("rate %s: want COUNT/DURATION, as 100/1m,1500/1h", offboard.Quote(s))
		case strings.TrimSpace(part) == "":
			return nil, fmt.Errorf("rate %s: an empty limit between commas; want COUNT/DURATION, as 100/1m,1500/1h", offboard.Quote(s))
		default:
			return nil, fmt.Errorf("rate %s: limit %s is not COUNT/DURATION, as 100/1m,1500/1h", offboard.Quote(s), offboard.Quote(part))
		}
	}
	return ws, nil
}

// parseWindow reads one limit, "100/1m".
func parseWindow(part string) (Window, bool) {
	c, d, ok := strings.Cut(strings.TrimSpace(part), "/")
	n, err := strconv.Atoi(c)
	if !ok || err != nil || n < 1 {
		return Window{}, false
	}
	l, err := time.ParseDuration(d)
	if err != nil || l <= 0 {
		return Window{}, false
	}
	return Window{n, l}, true
}

// DrainTime is how long n calls take under the windows, starting with
// every window empty (offboard.DrainTime).
func DrainTime(n int, ws []Window) time.Duration {
	limits := make([]offboard.PlanLimit, len(ws))
	for i, w := range ws {
		limits[i] = offboard.PlanLimit{Count: w.Count, Window: w.Length}
	}
	return offboard.DrainTime(limits, n)
}

// Estimate is what the end of a campaign is estimated from.
type Estimate struct {
	// Ahead is the tenant's backlog served before the campaign's last
	// request: normal-priority requests waiting, and for a bulk campaign
	// the bulk ones too (the campaign's own published rows among them).
	Ahead int
	// Unpublished is the campaign's rows not published yet.
	Unpublished int
	// Done is the number of results this run has seen arrive, over Elapsed.
	Done    int
	Elapsed time.Duration
	Windows []Window
	// Quota, when above zero, is the quota's time for the calls counted
	// after those already made in its windows (offboardctl reads them
	// from the quota journal); else the windows count from empty, which
	// errs short while one is full.
	Quota time.Duration
	// Pace, when set, remembers the quota's pace of the last backlog and
	// windows it was counted for (nil: counted at each ask).
	Pace *Pace
}

// Pace remembers DrainTime of one count of calls under one set of
// windows: a run's progress asks for the ETA five times a second, and the
// backlog it counts changes when it is read again, every few seconds.
// Counting a million calls takes milliseconds. Safe for concurrent use.
type Pace struct {
	mu sync.Mutex
	n  int
	ws []Window
	d  time.Duration
}

// drainTime is DrainTime(n, ws), counted again only for another n or
// other windows than the last.
func (p *Pace) drainTime(n int, ws []Window) time.Duration {
	if p == nil {
		return DrainTime(n, ws)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.ws == nil || n != p.n || !slices.Equal(ws, p.ws) {
		p.n, p.ws, p.d = n, slices.Clone(ws), DrainTime(n, ws)
	}
	return p.d
}

// minObserved is how many results, and over how long, make an observed
// rate worth more than the quota's.
const (
	minObserved     = 20
	minObservedSpan = 10 * time.Second
)

// ETA estimates how long until the campaign's last result: at the
// quota's pace (Quota, when longer than from empty windows), which is
// the shortest it can be, and with enough results seen, at the rate they
// came when that is longer (the worker's requests in flight, or the
// API's answers, are the limit, not the quota). A rate faster than the
// quota's pace is a start with its windows empty: the quota's pace
// stands.
func (e Estimate) ETA() time.Duration {
	n := e.Ahead + e.Unpublished
	if n <= 0 {
		return 0
	}
	ws := e.Windows
	if len(ws) == 0 {
		ws = DefaultWindows
	}
	eta := max(e.Pace.drainTime(n, ws), e.Quota)
	if e.measured() {
		rate := float64(e.Done) / e.Elapsed.Seconds()
		eta = max(eta, durationOf(float64(n)/rate*float64(time.Second)))
	}
	return eta
}

// durationOf is ns nanoseconds, the longest Duration when it holds no
// more: float64(math.MaxInt64) is 2^63, one past it, and converted back
// it is no Duration.
func durationOf(ns float64) time.Duration {
	if ns >= float64(math.MaxInt64) {
		return math.MaxInt64
	}
	return time.Duration(ns)
}

// Known says whether ETA is worth showing: nothing is left, a rate of
// results was measured, or the quota's pace alone takes longer than that
// measure. Shorter, the quota is not what sets the end, and its ETA (0s
// for a backlog within its first window) says nothing of it.
func (e Estimate) Known() bool {
	return e.Ahead+e.Unpublished <= 0 || e.measured() || e.ETA() >= minObservedSpan
}

// measured says whether enough results were seen, over long enough, for
// their rate to count.
func (e Estimate) measured() bool {
	return e.Done >= minObserved && e.Elapsed >= minObservedSpan
}

// Human shows a duration the way people read an ETA: 2h05m, 4m10s, 12s.
func Human(d time.Duration) string {
	// Rounded before the form is chosen: 59.6 s is 1m00s, not 1m0s, and
	// 59m59.6s is 1h00m, not 60m00s.
	if d < time.Hour {
		d = d.Round(time.Second)
	}
	switch {
	case d <= 0:
		return "0s"
	case d < time.Minute:
		return d.String()
	case d < time.Hour:
		return fmt.Sprintf("%dm%02ds", int(d.Minutes()), int(d.Seconds())%60)
	}
	d = d.Round(time.Minute)
	return fmt.Sprintf("%dh%02dm", int(d.Hours()), int(d.Minutes())%60)
}
