package deploy

import (
	"strings"
	"testing"
)

// TestCheckTypes: rate and increase of a gauge, deriv of a counter and a
// quantile of no histogram are found; the right kinds, and names the
// check does not know (a recording rule's), pass.
func TestCheckTypes(t *testing.T) {
	kinds := map[string]string{
		"calls_total": Counter, "waiting": Gauge,
		"latency_seconds_bucket": Counter, "latency_seconds_count": Counter,
	}
	for expr, want := range map[string]string{
		`sum by (tenant) (rate(calls_total[5m]))`:                                 "",
		`increase(calls_total[1h]) > 0`:                                           "",
		`deriv(waiting[10m])`:                                                     "",
		`histogram_quantile(0.9, sum by (le) (rate(latency_seconds_bucket[5m])))`: "",
		`rate(latency_seconds_count[5m])`:                                         "",
		`rate(tenant:recorded:max[5m])`:                                           "",
		`histogram_quantile(0.5, tenant:recorded:rate5m)`:                         "",
		`rate(waiting[5m])`:                                                       "rate(waiting), which is a gauge",
		`sum(increase(waiting[1h]))`:                                              "increase(waiting), which is a gauge",
		`deriv(calls_total[5m])`:                                                  "deriv(calls_total), which is a counter",
		`histogram_quantile(0.5, sum by (le) (waiting))`:                          "reads no histogram's _bucket",
		`rate(calls_total[5m]) / on () group_left rate(waiting[5m])`:              "rate(waiting)",
	} {
		problems, err := CheckTypes([]Query{{Where: "q", Expr: expr}}, kinds)
		if err != nil {
			t.Fatalf("%s: %v", expr, err)
		}
		switch {
		case want == "" && len(problems) > 0:
			t.Errorf("%s: %v, want none", expr, problems)
		case want != "" && (len(problems) != 1 || !strings.Contains(problems[0], want)):
			t.Errorf("%s: %v, want one naming %q", expr, problems, want)
		}
	}
}
