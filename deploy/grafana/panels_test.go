package grafana

import (
	"cmp"
	"encoding/json"
	"os"
	"slices"
	"strings"
	"testing"

	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/promql/parser"
	"go.yaml.in/yaml/v3"
)

// panel is what these tests read of a panel in the generated JSON.
type panel struct {
	Title       string `json:"title"`
	Type        string `json:"type"`
	FieldConfig struct {
		Defaults struct {
			Unit       string `json:"unit"`
			NoValue    string `json:"noValue"`
			Thresholds struct {
				Steps []struct {
					Value *float64 `json:"value"`
				} `json:"steps"`
			} `json:"thresholds"`
			Custom struct {
				ThresholdsStyle struct {
					Mode string `json:"mode"`
				} `json:"thresholdsStyle"`
				AxisSoftMax *float64 `json:"axisSoftMax"`
			} `json:"custom"`
		} `json:"defaults"`
		Overrides []struct {
			Matcher struct {
				ID      string `json:"id"`
				Options any    `json:"options"`
			} `json:"matcher"`
			Properties []struct {
				ID    string `json:"id"`
				Value any    `json:"value"`
			} `json:"properties"`
		} `json:"overrides"`
	} `json:"fieldConfig"`
	Targets []struct {
		RefID   string `json:"refId"`
		Expr    string `json:"expr"`
		Instant bool   `json:"instant"`
		Format  string `json:"format"`
	} `json:"targets"`
}

func panels(t *testing.T) []panel {
	t.Helper()
	data, err := JSON()
	if err != nil {
		t.Fatal(err)
	}
	var d struct {
		Panels []panel `json:"panels"`
	}
	if err := json.Unmarshal(data, &d); err != nil {
		t.Fatal(err)
	}
	return d.Panels
}

func panelTitled(t *testing.T, title string) panel {
	t.Helper()
	for _, p := range panels(t) {
		if p.Title == title {
			return p
		}
	}
	t.Fatalf("no panel %q", title)
	return panel{}
}

// unitOf is the unit a query's series are shown in: an override of its
// query's, else the panel's.
func (p panel) unitOf(refID string) string {
	unit := p.FieldConfig.Defaults.Unit
	for _, o := range p.FieldConfig.Overrides {
		if o.Matcher.ID != "byFrameRefID" || o.Matcher.Options != refID {
			continue
		}
		for _, prop := range o.Properties {
			if prop.ID == "unit" {
				unit, _ = prop.Value.(string)
			}
		}
	}
	return unit
}

// TestTablesAreInstant: a table shows one row per series only from an
// instant query in table format; a range query gives a frame per series,
// and the table shows the first (one paused tenant of many).
func TestTablesAreInstant(t *testing.T) {
	for _, p := range panels(t) {
		if p.Type != "table" {
			continue
		}
		for _, q := range p.Targets {
			if !q.Instant || q.Format != "table" {
				t.Errorf("table %q, query %s: instant %v, format %q; want an instant query in table format", p.Title, q.RefID, q.Instant, q.Format)
			}
		}
	}
}

// vars stands for the dashboard's variables in its queries, so that they
// parse.
var vars = strings.NewReplacer("$__rate_interval", "5m", "$tenant", "contoso")

// TestSecondsShownAsSeconds: a query of a metric in seconds is shown with
// the unit s, not as a bare number beside other series.
func TestSecondsShownAsSeconds(t *testing.T) {
	for _, p := range panels(t) {
		for _, q := range p.Targets {
			e, err := parser.NewParser(parser.Options{}).ParseExpr(vars.Replace(q.Expr))
			if err != nil {
				t.Fatalf("%s %s: %v", p.Title, q.RefID, err)
			}
			seconds := false
			parser.Inspect(e, func(n parser.Node, _ []parser.Node) error {
				if vs, ok := n.(*parser.VectorSelector); ok && strings.Contains(vs.Name, "_seconds") && !strings.HasSuffix(vs.Name, "_bucket") {
					seconds = true
				}
				if c, ok := n.(*parser.Call); ok && c.Func.Name == "histogram_quantile" {
					seconds = true
				}
				return nil
			})
			if seconds && p.unitOf(q.RefID) != "s" {
				t.Errorf("panel %q, query %s (%s): unit %q, want s", p.Title, q.RefID, q.Expr, p.unitOf(q.RefID))
			}
		}
	}
}

// TestBudgetLeftOnlyBudgetedTenants: a tenant without a budget reports
// NaN; the panel lists the tenants with one, not every tenant as NaN. A
// comparison without bool drops the samples for which it is false, and
// every comparison with NaN is: the query must end in one, ">= 0".
func TestBudgetLeftOnlyBudgetedTenants(t *testing.T) {
	t.Parallel()
	p := panelTitled(t, "Budget left")
	e, err := parser.NewParser(parser.Options{}).ParseExpr(vars.Replace(p.Targets[0].Expr))
	if err != nil {
		t.Fatal(err)
	}
	b, ok := e.(*parser.BinaryExpr)
	if !ok || b.Op != parser.GTE || b.ReturnBool {
		t.Fatalf("Budget left: %s, want a query ending in >= 0, which drops the NaN of tenants without a budget", p.Targets[0].Expr)
	}
	if n, ok := b.RHS.(*parser.NumberLiteral); !ok || n.Val != 0 {
		t.Errorf("Budget left: %s compares with %s, want 0", p.Targets[0].Expr, b.RHS)
	}
	var budget bool
	parser.Inspect(b.LHS, func(n parser.Node, _ []parser.Node) error {
		if vs, ok := n.(*parser.VectorSelector); ok && vs.Name == "mde_offboard_budget_remaining" {
			budget = true
		}
		return nil
	})
	if !budget {
		t.Errorf("Budget left: %s does not read mde_offboard_budget_remaining", p.Targets[0].Expr)
	}
}

// TestControlsLeaveOutReplicasWithoutNATS: a replica that lost NATS sees
// no resume and no change of budget, and keeps reporting the pause, the
// hold and the budget it saw last. The panels of the controls take the
// max (or min) across replicas, so each leaves such a replica out, as the
// alerts and the backlog's recording rules do: unless on (job, instance)
// (mde_offboard_nats_connected == 0).
func TestControlsLeaveOutReplicasWithoutNATS(t *testing.T) {
	t.Parallel()
	controls := map[string]bool{
		"mde_offboard_tenant_paused": true, "mde_offboard_held_requests": true, "mde_offboard_budget_remaining": true,
	}
	seen := map[string]bool{}
	for _, p := range panels(t) {
		for _, q := range p.Targets {
			e, err := parser.NewParser(parser.Options{}).ParseExpr(vars.Replace(q.Expr))
			if err != nil {
				t.Fatalf("%s %s: %v", p.Title, q.RefID, err)
			}
			parser.Inspect(e, func(n parser.Node, path []parser.Node) error {
				vs, ok := n.(*parser.VectorSelector)
				if !ok || !controls[vs.Name] {
					return nil
				}
				seen[vs.Name] = true
				if !leftOutWithoutNATS(vs, path) {
					t.Errorf("panel %q, query %s (%s): %s of a replica without NATS is not left out", p.Title, q.RefID, q.Expr, vs.Name)
				}
				return nil
			})
		}
	}
	for name := range controls {
		if !seen[name] {
			t.Errorf("no panel reads %s", name)
		}
	}
}

// leftOutWithoutNATS says whether vs, found under path, is the left side
// of an "unless on (job, instance)" whose right side reads
// mde_offboard_nats_connected.
func leftOutWithoutNATS(vs *parser.VectorSelector, path []parser.Node) bool {
	var child parser.Node = vs
	for i := len(path) - 1; i >= 0; i-- {
		b, ok := path[i].(*parser.BinaryExpr)
		if ok && b.Op == parser.LUNLESS && b.LHS == child && b.VectorMatching != nil && b.VectorMatching.On &&
			strings.Join(b.VectorMatching.MatchingLabels, ",") == "job,instance" && strings.Contains(b.RHS.String(), "mde_offboard_nats_connected") {
			return true
		}
		child = path[i]
	}
	return false
}

// TestTrackingLeavesOutReplicasWithoutNATS: a replica without NATS gets no
// quota for its looks and reads no ledger, so its tracking lag grows and
// its count of followed actions stays while the other replicas follow the
// tenant's actions. Action tracking takes the max across replicas, so it
// leaves such a replica out, as MdeOffboardTrackingBehind does; else the
// panel shows the tracking an hour behind while the alert stays quiet.
func TestTrackingLeavesOutReplicasWithoutNATS(t *testing.T) {
	t.Parallel()
	p := panelTitled(t, "Action tracking")
	tracking := map[string]bool{"mde_offboard_tracked_actions": true, "mde_offboard_tracking_lag_seconds": true}
	seen := map[string]bool{}
	for _, q := range p.Targets {
		e, err := parser.NewParser(parser.Options{}).ParseExpr(vars.Replace(q.Expr))
		if err != nil {
			t.Fatalf("%s: %v", q.RefID, err)
		}
		parser.Inspect(e, func(n parser.Node, path []parser.Node) error {
			vs, ok := n.(*parser.VectorSelector)
			if !ok || !tracking[vs.Name] {
				return nil
			}
			seen[vs.Name] = true
			if !leftOutWithoutNATS(vs, path) {
				t.Errorf("query %s (%s): %s of a replica without NATS is not left out", q.RefID, q.Expr, vs.Name)
			}
			return nil
		})
	}
	for name := range tracking {
		if !seen[name] {
			t.Errorf("Action tracking does not read %s", name)
		}
	}
}

// TestNoneShownAsZero: a time series panel whose query drops the series
// at zero (> 0, so that a thousand tenants at zero do not fill it) has
// nothing to draw while none is above zero: no 429 in the last hour, no
// refusal, nothing held. It shows 0 then, not "No data", which reads as a
// broken query or a missing metric in the middle of an incident.
func TestNoneShownAsZero(t *testing.T) {
	t.Parallel()
	dropping := 0
	for _, p := range panels(t) {
		if p.Type != "timeseries" {
			continue
		}
		for _, q := range p.Targets {
			e, err := parser.NewParser(parser.Options{}).ParseExpr(vars.Replace(q.Expr))
			if err != nil {
				t.Fatalf("%s %s: %v", p.Title, q.RefID, err)
			}
			b, ok := e.(*parser.BinaryExpr)
			if !ok || b.Op != parser.GTR || b.ReturnBool {
				continue
			}
			if n, ok := b.RHS.(*parser.NumberLiteral); !ok || n.Val != 0 {
				continue
			}
			dropping++
			if p.FieldConfig.Defaults.NoValue != "0" {
				t.Errorf("panel %q, query %s (%s) drops the series at zero; with none above it the panel shows %q, want 0",
					p.Title, q.RefID, q.Expr, cmp.Or(p.FieldConfig.Defaults.NoValue, "No data"))
			}
		}
	}
	if dropping == 0 {
		t.Error("no panel drops its series at zero: the test checks nothing")
	}
}

// TestStatsAreInstant: a stat shows one value per series its query
// returns, reduced to the last. A range query returns every series of
// the time range: after a rollout or a crash, the replicas gone hours ago
// show beside those running, with their last value ("up", or "down" for
// one that stopped without NATS). An instant query returns those running.
func TestStatsAreInstant(t *testing.T) {
	t.Parallel()
	stats := 0
	for _, p := range panels(t) {
		if p.Type != "stat" {
			continue
		}
		stats++
		for _, q := range p.Targets {
			if !q.Instant {
				t.Errorf("stat %q, query %s (%s) is a range query: the replicas of the whole time range show, gone or not", p.Title, q.RefID, q.Expr)
			}
		}
	}
	if stats == 0 {
		t.Error("no stat panel: the test checks nothing")
	}
}

// serviceLevels are the ages past which MdeOffboardRequestsWaitingTooLong
// fires, by priority, read from its expression: each comparison of
// mde_offboard_oldest_waiting_seconds of one priority with a number.
func serviceLevels(t *testing.T) map[string]float64 {
	t.Helper()
	data, err := os.ReadFile("../prometheus/alerts.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var f struct {
		Groups []struct {
			Rules []struct {
				Alert string `yaml:"alert"`
				Expr  string `yaml:"expr"`
			} `yaml:"rules"`
		} `yaml:"groups"`
	}
	if err := yaml.Unmarshal(data, &f); err != nil {
		t.Fatal(err)
	}
	levels := map[string]float64{}
	for _, g := range f.Groups {
		for _, r := range g.Rules {
			if r.Alert != "MdeOffboardRequestsWaitingTooLong" {
				continue
			}
			e, err := parser.NewParser(parser.Options{}).ParseExpr(r.Expr)
			if err != nil {
				t.Fatal(err)
			}
			parser.Inspect(e, func(n parser.Node, _ []parser.Node) error {
				b, ok := n.(*parser.BinaryExpr)
				if !ok || b.Op != parser.GTR {
					return nil
				}
				level, ok := b.RHS.(*parser.NumberLiteral)
				if !ok {
					return nil
				}
				if p := waitingPriority(b.LHS); p != "" {
					levels[p] = level.Val
				}
				return nil
			})
		}
	}
	if len(levels) == 0 {
		t.Fatal("no service level found in MdeOffboardRequestsWaitingTooLong")
	}
	return levels
}

// waitingPriority is the one priority whose oldest waiting age e reads,
// "" when it reads none or every one.
func waitingPriority(e parser.Node) string {
	priority := ""
	parser.Inspect(e, func(n parser.Node, _ []parser.Node) error {
		vs, ok := n.(*parser.VectorSelector)
		if !ok || !strings.Contains(vs.Name, "oldest_waiting_seconds") {
			return nil
		}
		for _, m := range vs.LabelMatchers {
			if m.Name == "priority" && m.Type == labels.MatchEqual {
				priority = m.Value
			}
		}
		return nil
	})
	return priority
}

// TestWaitingShowsTheServiceLevels: the age of the oldest waiting request
// is shown against its priority's service level, the age past which
// MdeOffboardRequestsWaitingTooLong fires (normal 15 minutes, bulk 24
// hours): one panel per priority, each drawing its level as a line, on an
// axis that reaches it while the requests are younger. A threshold of a
// time series panel is drawn only with a thresholds style; the panel
// showed both priorities with a threshold of 900 s and no style: it drew
// nothing, and would have been the normal priority's for bulk too.
func TestWaitingShowsTheServiceLevels(t *testing.T) {
	t.Parallel()
	levels := serviceLevels(t)
	shown := map[string]bool{}
	for _, p := range panels(t) {
		for _, q := range p.Targets {
			if !strings.Contains(q.Expr, "oldest_waiting_seconds") {
				continue
			}
			e, err := parser.NewParser(parser.Options{}).ParseExpr(vars.Replace(q.Expr))
			if err != nil {
				t.Fatalf("%s %s: %v", p.Title, q.RefID, err)
			}
			priority := waitingPriority(e)
			level, ok := levels[priority]
			if !ok {
				t.Errorf("panel %q, query %s (%s) shows no one priority of %v: no service level to draw", p.Title, q.RefID, q.Expr, levels)
				continue
			}
			shown[priority] = true
			var steps []float64
			for _, s := range p.FieldConfig.Defaults.Thresholds.Steps {
				if s.Value != nil {
					steps = append(steps, *s.Value)
				}
			}
			if len(steps) != 1 || steps[0] != level {
				t.Errorf("panel %q (%s): thresholds at %v, want one at the service level, %v s", p.Title, priority, steps, level)
			}
			if mode := p.FieldConfig.Defaults.Custom.ThresholdsStyle.Mode; mode == "" || mode == "off" {
				t.Errorf("panel %q (%s): thresholds style %q draws no threshold", p.Title, priority, mode)
			}
			if m := p.FieldConfig.Defaults.Custom.AxisSoftMax; m == nil || *m < level {
				t.Errorf("panel %q (%s): axis soft max %v; the level's line is off the panel while the requests are younger", p.Title, priority, m)
			}
		}
	}
	for priority := range levels {
		if !shown[priority] {
			t.Errorf("no panel shows the oldest waiting %s request", priority)
		}
	}
}

// TestEmptyPanelsSaySo: a panel whose query drops series (a comparison
// without bool: nothing paused, no tenant with a budget) or reads a
// metric only some tenants have (a certificate, tracking) has nothing to
// draw in the usual case. It says what that means, not "No data", which
// reads as a broken query; and a panel whose query keeps zeros
// (Budget left, >= 0) does not say 0, which reads as a spent budget.
func TestEmptyPanelsSaySo(t *testing.T) {
	t.Parallel()
	someTenants := []string{"mde_offboard_certificate_expiry_timestamp_seconds", "mde_offboard_tracked_actions", "mde_offboard_tracking_lag_seconds"}
	for _, p := range panels(t) {
		noValue := p.FieldConfig.Defaults.NoValue
		for _, q := range p.Targets {
			e, err := parser.NewParser(parser.Options{}).ParseExpr(vars.Replace(q.Expr))
			if err != nil {
				t.Fatalf("%s %s: %v", p.Title, q.RefID, err)
			}
			b, filters := e.(*parser.BinaryExpr)
			filters = filters && b.Op.IsComparisonOperator() && !b.ReturnBool
			partial := slices.ContainsFunc(someTenants, func(name string) bool { return strings.Contains(q.Expr, name) })
			if (filters || partial) && noValue == "" {
				t.Errorf("panel %q, query %s (%s) can return nothing; the panel shows \"No data\", want it to say what that means", p.Title, q.RefID, q.Expr)
			}
			if filters && b.Op == parser.GTE && noValue == "0" {
				t.Errorf("panel %q, query %s (%s) keeps zeros: with none it shows 0, as for a value of 0", p.Title, q.RefID, q.Expr)
			}
		}
	}
}
