package bench

import (
	"cmp"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/contoso-secops/mde-offboard/internal/mde/mdesim"
)

// ---- the simulator's view ----

// callCounter counts each tenant's admitted offboard calls as the
// simulator answers them.
type callCounter struct {
	mu     sync.Mutex
	counts map[string]int // by lower-case tenant id
	first  time.Time
	at     map[string]time.Time // when the tenant reached mark
	mark   int
}

func newCallCounter() *callCounter {
	return &callCounter{counts: map[string]int{}, at: map[string]time.Time{}}
}

func (c *callCounter) record(call mdesim.Call) {
	if call.API != mdesim.APIOffboard || call.Throttled || call.TenantID == "" {
		return
	}
	now := time.Now()
	id := strings.ToLower(call.TenantID)
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.first.IsZero() {
		c.first = now
	}
	c.counts[id]++
	if c.mark > 0 && c.counts[id] == c.mark {
		c.at[id] = now
	}
}

// setMark makes the counter note when each tenant reaches n calls.
func (c *callCounter) setMark(n int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.mark = n
}

func (c *callCounter) snapshot() (first time.Time, total, reached int, at []time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, n := range c.counts {
		total += n
	}
	for _, t := range c.at {
		at = append(at, t)
	}
	return c.first, total, len(c.at), at
}

func (c *callCounter) of(tenantID string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.counts[strings.ToLower(tenantID)]
}

// tenantCalls are what the simulator saw of a tenant's offboard calls.
type tenantCalls struct {
	admitted    int       // any answer but a rate-window 429
	first, last time.Time // of the admitted calls
	devices     int       // devices called at least once
	extraCalls  int       // admitted calls beyond one per device
	maxIn       []int     // the busiest interval of each window
	overLimit   int       // sum over windows of max(0, maxIn-Count)
	throttled   int       // rate-window 429s
	dupActions  int       // devices with more than one action
	actions     int
	// lag is, for the shortest window (Count calls per Length), how long
	// after call i's place left the window call i+Count came: the
	// median and the 90th percentile. Zero for a perfect worker at full
	// pace; it is what a drain loses each time the window comes round.
	lag50, lag90 time.Duration
	// ramp is how long the shortest window's first Count calls took from
	// the first: the ideal has them all at once, and the windows carry
	// what they spread to the end of the drain.
	ramp time.Duration
}

func (h *harness) simView(t *tenant, calls []mdesim.Call, ws []mdesim.Window) tenantCalls {
	var v tenantCalls
	perDevice := map[string]int{}
	var at []time.Time
	for _, c := range calls {
		if c.API != mdesim.APIOffboard || !strings.EqualFold(c.TenantID, t.id) {
			continue
		}
		if c.Throttled {
			continue
		}
		at = append(at, c.At)
		v.admitted++
		if v.first.IsZero() || c.At.Before(v.first) {
			v.first = c.At
		}
		if c.At.After(v.last) {
			v.last = c.At
		}
		perDevice[strings.ToLower(c.MachineID)]++
	}
	v.devices = len(perDevice)
	v.extraCalls = v.admitted - v.devices
	v.lag50, v.lag90 = slotLag(at, ws)
	v.ramp = firstRamp(at, ws)
	for _, w := range ws {
		n := h.sim.MaxInWindow(t.id, mdesim.APIOffboard, w)
		v.maxIn = append(v.maxIn, n)
		v.overLimit += max(0, n-w.Count)
	}
	v.throttled = h.sim.ThrottledCount(t.id, mdesim.APIOffboard)
	actions := map[string]int{}
	for _, a := range h.sim.Actions(t.id) {
		actions[strings.ToLower(a.MachineID)]++
	}
	for _, n := range actions {
		v.actions += n
		if n > 1 {
			v.dupActions++
		}
	}
	return v
}

// slotLag is the median and 90th percentile of how late call i+Count
// came after call i's place left the shortest window, over the calls
// that came within twice the window's length (the others waited for a
// longer window, not for the worker).
// firstRamp is how long the shortest window's first Count calls took,
// at sorted by slotLag.
func firstRamp(at []time.Time, ws []mdesim.Window) time.Duration {
	if len(ws) == 0 {
		return 0
	}
	w := slices.MinFunc(ws, func(a, b mdesim.Window) int { return cmp.Compare(a.Length, b.Length) })
	if len(at) < w.Count {
		return 0
	}
	return at[w.Count-1].Sub(at[0])
}

func slotLag(at []time.Time, ws []mdesim.Window) (p50, p90 time.Duration) {
	if len(ws) == 0 {
		return 0, 0
	}
	w := slices.MinFunc(ws, func(a, b mdesim.Window) int { return cmp.Compare(a.Length, b.Length) })
	slices.SortFunc(at, time.Time.Compare)
	var lags []time.Duration
	for i := 0; i+w.Count < len(at); i++ {
		if lag := at[i+w.Count].Sub(at[i]) - w.Length; lag < w.Length {
			lags = append(lags, lag)
		}
	}
	if len(lags) == 0 {
		return 0, 0
	}
	slices.Sort(lags)
	return lags[len(lags)/2], lags[len(lags)*9/10]
}

func (v tenantCalls) windowsString(ws []mdesim.Window) string {
	parts := make([]string, len(ws))
	for i, w := range ws {
		parts[i] = fmt.Sprintf("%d/%d in %v", v.maxIn[i], w.Count, w.Length)
	}
	return strings.Join(parts, ", ")
}

// ---- figures ----

// idealStarts is the greedy schedule of n calls that take no time: call k
// starts at the earliest moment at which no window would hold more than its
// count. For sliding windows it is optimal.
func idealStarts(ws []mdesim.Window, n int) []time.Duration {
	starts := make([]time.Duration, n)
	for k := range starts {
		if k > 0 {
			starts[k] = starts[k-1]
		}
		for _, w := range ws {
			if k >= w.Count {
				// Calls k-Count..k must not share a window [a, a+Length).
				starts[k] = max(starts[k], starts[k-w.Count]+w.Length)
			}
		}
	}
	return starts
}

// percentile returns the p-th percentile (0..1) of ds, nearest rank.
func percentile(ds []time.Duration, p float64) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	i := int(p*float64(len(s))+0.5) - 1
	return s[min(max(i, 0), len(s)-1)]
}

func mb(b int64) float64 { return float64(b) / (1 << 20) }

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
