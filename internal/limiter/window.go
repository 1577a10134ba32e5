package limiter

import (
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"
)

// Window is a sliding-window limit: at most Count calls in any interval of
// length Length.
type Window struct {
	Count  int
	Length time.Duration
}

// ParseWindow reads a limit written as "<count>/<duration>", for example
// "100/1m", "1500/1h" or "10/200ms". Its errors do not quote the value: a
// secret pasted in its place would be shown wherever they are printed.
func ParseWindow(s string) (Window, error) {
	return parseWindow(s, "limit", "100/1m", " or 200ms", math.MaxInt)
}

// parseWindow reads "<count>/<duration>" whose count is at most most. Its
// errors name the value what ("limit", "budget") and show example, one
// written well, with more durations after it.
func parseWindow(s, what, example, more string, most int) (Window, error) {
	count, length, ok := strings.Cut(strings.TrimSpace(s), "/")
	if !ok || strings.Contains(length, "/") {
		return Window{}, fmt.Errorf("a %s is written <count>/<duration>, like %s", what, example)
	}
	exCount, exLength, _ := strings.Cut(example, "/")
	n, err := strconv.Atoi(count)
	switch {
	case errors.Is(err, strconv.ErrRange) && !strings.HasPrefix(count, "-"), err == nil && n > most:
		return Window{}, fmt.Errorf("a %s's count must be at most %d", what, most)
	case err != nil || n < 1:
		return Window{}, fmt.Errorf("a %s's count must be a positive whole number, like the %s of %s", what, exCount, example)
	}
	d, err := time.ParseDuration(length)
	if err != nil || d <= 0 {
		return Window{}, fmt.Errorf("a %s's duration must be a positive Go duration, like the %s of %s%s", what, exLength, example, more)
	}
	return Window{Count: n, Length: d}, nil
}

// MinBudget is the shortest window a budget may have. A budget caps the
// devices offboarded over hours or days; a window under a second is a
// slip of the unit (5/1ms for 5/1m), and one of a few nanoseconds ends
// before the next call starts: no budget at all.
const MinBudget = time.Second

// MaxBudget is the largest count a budget may have: ten million devices,
// more than a tenant has, and than its offboard quota (1500 calls an
// hour) lets through in nine months. A count as large as an int holds
// would wrap where a count is added to (offboard.DrainTime), show as more
// than it is in a gauge (a float) and in JSON read as one, and limit
// nothing.
const MaxBudget = 10_000_000

// ParseBudget reads a budget, the tenants file's guards.budget as an
// operator's override: a limit as ParseWindow reads it, whose window is
// at least MinBudget. Its errors do not quote the value either.
func ParseBudget(s string) (Window, error) {
	w, err := parseWindow(s, "budget", "500/24h", " or 90m; a day is 24h", MaxBudget)
	switch {
	case err != nil:
		return Window{}, err
	case w.Length < MinBudget:
		return Window{}, fmt.Errorf("a budget's duration must be at least %s, like the 24h of 500/24h", MinBudget)
	}
	return w, nil
}

// ParseWindows reads a list of limits; an empty list is an error, since a
// tenant without any limit would hammer the API.
func ParseWindows(specs []string) ([]Window, error) {
	if len(specs) == 0 {
		return nil, fmt.Errorf("no limits given")
	}
	ws := make([]Window, 0, len(specs))
	for i, s := range specs {
		w, err := ParseWindow(s)
		if err != nil {
			return nil, fmt.Errorf("limit %d of %d: %w", i+1, len(specs), err)
		}
		ws = append(ws, w)
	}
	return ws, nil
}

func (w Window) String() string { return fmt.Sprintf("%d/%s", w.Count, w.Length) }

// Spec is the window written one way only, as a budget is stored and
// shown: the count in decimal and the length as Go writes it, without
// its zero minutes and seconds. "500/24h" stays so; "+5/60m", "05/1h"
// and "5/3600s" are "5/1h".
func (w Window) Spec() string {
	d := w.Length.String()
	if strings.HasSuffix(d, "m0s") {
		d = strings.TrimSuffix(d, "0s")
	}
	if strings.HasSuffix(d, "h0m") {
		d = strings.TrimSuffix(d, "0m")
	}
	return fmt.Sprintf("%d/%s", w.Count, d)
}

// Label is the window's length as a short, stable metric label: "1m" and
// "1h" rather than Go's "1m0s" and "1h0m0s".
func (w Window) Label() string {
	switch d := w.Length; {
	case d%time.Hour == 0:
		return fmt.Sprintf("%dh", d/time.Hour)
	case d%time.Minute == 0:
		return fmt.Sprintf("%dm", d/time.Minute)
	case d%time.Second == 0:
		return fmt.Sprintf("%ds", d/time.Second)
	default:
		return d.String()
	}
}

// Default is the documented Defender for Endpoint limit of every API the
// worker uses: 100 calls per minute and 1500 per hour.
func Default() []Window {
	return []Window{{Count: 100, Length: time.Minute}, {Count: 1500, Length: time.Hour}}
}
