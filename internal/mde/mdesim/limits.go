package mdesim

import (
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"
)

// DefaultLimits returns the documented limits: 100 calls per minute and 1500
// per hour for each of the three APIs.
func DefaultLimits() map[string][]Window {
	m := make(map[string][]Window, 3)
	for _, api := range []string{APIOffboard, APIMachines, APIMachineActions} {
		m[api] = []Window{{Count: 100, Length: time.Minute}, {Count: 1500, Length: time.Hour}}
	}
	return m
}

// ParseLimits parses a limit specification such as
// "offboard=100/1m,1500/1h;machines=100/1m". An empty spec gives
// DefaultLimits; "none" gives no limits. APIs not named keep their default
// limits; "api=none" removes the limits of that API. A window is
// COUNT/DURATION with a time.ParseDuration duration; a bare unit ("100/m")
// means one of it. Its errors name a limit and a window by their place,
// never quote them: a secret given in the flag's place would be shown.
func ParseLimits(spec string) (map[string][]Window, error) {
	spec = strings.TrimSpace(spec)
	limits := DefaultLimits()
	if strings.EqualFold(spec, "none") {
		// Each API present with no windows: one missing from the map
		// would have the documented limits (Options.Limits).
		for api := range limits {
			limits[api] = nil
		}
		return limits, nil
	}
	if spec == "" {
		return limits, nil
	}
	n := 0 // the limit's place, counted from 1
	for part := range strings.SplitSeq(spec, ";") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		n++
		api, windows, ok := strings.Cut(part, "=")
		api = strings.ToLower(strings.TrimSpace(api))
		if !ok {
			return nil, fmt.Errorf("limit %d: want api=count/duration pairs separated by commas", n)
		}
		if _, known := limits[api]; !known {
			return nil, fmt.Errorf("limit %d: unknown API (want %s, %s or %s)", n, APIOffboard, APIMachines, APIMachineActions)
		}
		if strings.EqualFold(strings.TrimSpace(windows), "none") {
			limits[api] = nil
			continue
		}
		var ws []Window
		k := 0
		for ws1 := range strings.SplitSeq(windows, ",") {
			k++
			w, err := parseWindow(strings.TrimSpace(ws1))
			if err != nil {
				return nil, fmt.Errorf("limit %d, window %d: %w", n, k, err)
			}
			ws = append(ws, w)
		}
		limits[api] = ws
	}
	return limits, nil
}

func parseWindow(s string) (Window, error) {
	count, dur, ok := strings.Cut(s, "/")
	if !ok {
		return Window{}, errors.New("want count/duration")
	}
	n, err := strconv.Atoi(strings.TrimSpace(count))
	if err != nil || n < 0 {
		return Window{}, errors.New("the count is not a whole number of 0 or more")
	}
	dur = strings.TrimSpace(dur)
	if dur != "" && (dur[0] < '0' || dur[0] > '9') && dur[0] != '.' {
		dur = "1" + dur
	}
	d, err := time.ParseDuration(dur)
	if err != nil {
		// time's error quotes the duration.
		return Window{}, errors.New("the duration does not read, such as 1m or 1h")
	}
	if d <= 0 {
		return Window{}, errors.New("the duration must be positive")
	}
	return Window{Count: n, Length: d}, nil
}

type windowKey struct{ tenant, client, api string }

// admitLocked applies the rate windows of api to a call at now. It records
// the call and returns ok, or returns the window that is full and how long
// until a call would be admitted.
func (s *Server) admitLocked(k windowKey, now time.Time) (ok bool, full Window, wait time.Duration) {
	windows := s.opts.Limits[k.api]
	if len(windows) == 0 {
		return true, Window{}, 0
	}
	times := s.windows[k]
	var longest time.Duration
	for _, w := range windows {
		longest = max(longest, w.Length)
	}
	// Drop calls that no window can see any more.
	drop := sort.Search(len(times), func(i int) bool { return times[i].After(now.Add(-longest)) })
	times = times[drop:]

	throttled := false
	for _, w := range windows {
		// Calls at (now-Length, now] share a window with this one.
		first := sort.Search(len(times), func(i int) bool { return times[i].After(now.Add(-w.Length)) })
		inWindow := len(times) - first
		if inWindow < w.Count {
			continue
		}
		d := w.Length
		if w.Count > 0 {
			// Once this call leaves, the window holds Count-1 calls.
			d = times[first+inWindow-w.Count].Add(w.Length).Sub(now)
		}
		if !throttled || d > wait {
			full, wait = w, d
		}
		throttled = true
	}
	if throttled {
		s.windows[k] = times
		return false, full, wait
	}
	s.windows[k] = append(times, now)
	return true, Window{}, 0
}

// retryAfterSeconds rounds d up to whole seconds, at least 1. The
// remainder is added after the division: d plus a second would overflow
// for the longest durations.
func retryAfterSeconds(d time.Duration) int64 {
	secs := int64(d / time.Second)
	if d%time.Second > 0 {
		secs++
	}
	return max(secs, 1)
}

// timeSpan formats d like a .NET TimeSpan: [d.]hh:mm:ss.
func timeSpan(d time.Duration) string {
	d = d.Round(time.Second)
	days := d / (24 * time.Hour)
	d -= days * 24 * time.Hour
	h := d / time.Hour
	d -= h * time.Hour
	m := d / time.Minute
	d -= m * time.Minute
	sec := d / time.Second
	if days > 0 {
		return fmt.Sprintf("%d.%02d:%02d:%02d", days, h, m, sec)
	}
	return fmt.Sprintf("%02d:%02d:%02d", h, m, sec)
}

func quotaMessage(w Window) string {
	return fmt.Sprintf("API calls quota exceeded! maximum allowed %d per %s", w.Count, timeSpan(w.Length))
}
