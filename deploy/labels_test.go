package deploy

import (
	"strings"
	"testing"
)

// TestCheckLabels: the labels an expression uses with a metric are
// followed through aggregations, functions, vector matching and
// recording rules; a label the metric lacks is named, one it has is not.
func TestCheckLabels(t *testing.T) {
	exposed := map[string][]string{
		"calls_total":    {"tenant", "api", "status"},
		"wait_bucket":    {"priority", "le"},
		"connected":      {},
		"quota_remained": {"tenant", "window"},
	}
	record := Query{Where: "record: tenant:calls:rate5m", Record: "tenant:calls:rate5m",
		Expr: `sum by (tenant) (rate(calls_total[5m]))`, Labels: map[string]string{"team": "secops"}}
	for _, tc := range []struct {
		expr string
		bad  string // the label the first problem names; "" for none
	}{
		{`sum by (tenant, api) (rate(calls_total{status="429"}[5m]))`, ""},
		{`sum by (tennant) (rate(calls_total[5m]))`, "tennant"},
		{`calls_total{code="x"}`, "code"},
		{`sum without (api) (calls_total)`, ""},
		{`sum by (api) (sum without (api) (calls_total))`, "api"},
		{`histogram_quantile(0.9, sum by (le, priority) (rate(wait_bucket[5m])))`, ""},
		{`histogram_quantile(0.9, sum by (priority) (rate(wait_bucket[5m])))`, "le"},
		{`max by (le) (histogram_quantile(0.9, rate(wait_bucket[5m])))`, "le"},
		{`quota_remained unless on (job, instance) (connected == 0)`, ""},
		{`quota_remained unless on (pod) (connected == 0)`, "pod"},
		{`max by (tenant) (calls_total / on (tenant, api) group_left sum by (tenant, api) (calls_total))`, ""},
		{`max by (window) (calls_total / on (tenant) group_left (window) quota_remained)`, ""},
		{`max by (window) (calls_total / on (tenant) group_left (windows) quota_remained)`, "windows"},
		{`sum by (tenant, team) (tenant:calls:rate5m)`, ""},
		{`sum by (api) (tenant:calls:rate5m)`, "api"},
		{`label_replace(calls_total, "t", "$1", "tenant_id", "(.*)")`, "tenant_id"},
		{`count by (t) (label_replace(calls_total, "t", "$1", "tenant", "(.*)"))`, ""},
		{`absent(up{job="mde-offboard"})`, ""},
		{`up{namespace="x"}`, "namespace"},
		{`sum by (tenant) (rate(unknown_total[5m]))`, ""}, // names are checked elsewhere
	} {
		problems, err := CheckLabels([]Query{record, {Where: "q", Expr: tc.expr}}, exposed)
		if err != nil {
			t.Fatalf("%s: %v", tc.expr, err)
		}
		switch {
		case tc.bad == "" && len(problems) > 0:
			t.Errorf("%s: %v", tc.expr, problems)
		case tc.bad != "" && (len(problems) == 0 || !strings.Contains(problems[0], `"`+tc.bad+`"`)):
			t.Errorf("%s: %v, want a problem naming %q first", tc.expr, problems, tc.bad)
		}
	}
}
