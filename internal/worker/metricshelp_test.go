package worker

import (
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
)

// TestMetricsHelpSaysWhatTheGaugesCount: the help of the waiting gauges
// says what they count, as the README's metrics table does. The oldest
// waiting age counts a request under way or handed back for a later
// redelivery, and the held requests count those fetched and waiting in a
// worker; both helps said "waiting in the stream", which an operator
// reading /metrics took for the stream alone.
func TestMetricsHelpSaysWhatTheGaugesCount(t *testing.T) {
	reg := prometheus.NewRegistry()
	m := NewMetrics(reg)
	m.OldestWaiting.WithLabelValues("contoso", "normal").Set(0)
	m.HeldRequests.WithLabelValues("contoso", "budget").Set(0)
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	help := map[string]string{}
	for _, mf := range mfs {
		help[mf.GetName()] = mf.GetHelp()
	}
	for name, want := range map[string][]string{
		"mde_offboard_oldest_waiting_seconds": {"not answered", "under way", "handed back"},
		"mde_offboard_held_requests":          {"pause", "budget", "in the stream", "in a worker"},
	} {
		h, ok := help[name]
		if !ok {
			t.Errorf("%s: not gathered", name)
			continue
		}
		for _, w := range want {
			if !strings.Contains(h, w) {
				t.Errorf("%s help %q: says nothing of %q", name, h, w)
			}
		}
	}
}
