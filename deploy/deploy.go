package deploy

import (
	"embed"
	"encoding/json"
	"fmt"
	"regexp"
	"slices"
	"strings"

	"github.com/prometheus/prometheus/promql/parser"
	"go.yaml.in/yaml/v3"
)

// Files are the dashboard and the Prometheus rule files.
//
//go:embed grafana/mde-offboard.json prometheus/alerts.yaml prometheus/rules.yaml
var Files embed.FS

// Dashboard is the file of the Grafana dashboard.
const Dashboard = "grafana/mde-offboard.json"

// RuleFiles are the Prometheus rule files.
var RuleFiles = []string{"prometheus/alerts.yaml", "prometheus/rules.yaml"}

// Query is one PromQL expression and where it is.
type Query struct {
	Where string // "dashboard: <panel title>", "alert: <name>", "record: <name>"
	Expr  string
	// Record is the name a recording rule gives the expression's series,
	// and Labels the labels it sets on them.
	Record string
	Labels map[string]string
}

// RuleGroups is a Prometheus rule file.
type RuleGroups struct {
	Groups []RuleGroup `yaml:"groups" json:"groups"`
}

// RuleGroup is one group of rules.
type RuleGroup struct {
	Name     string `yaml:"name" json:"name"`
	Interval string `yaml:"interval,omitempty" json:"interval,omitempty"`
	Rules    []Rule `yaml:"rules" json:"rules"`
}

// Rule is an alerting or a recording rule.
type Rule struct {
	Alert       string            `yaml:"alert,omitempty" json:"alert,omitempty"`
	Record      string            `yaml:"record,omitempty" json:"record,omitempty"`
	Expr        string            `yaml:"expr" json:"expr"`
	For         string            `yaml:"for,omitempty" json:"for,omitempty"`
	Labels      map[string]string `yaml:"labels,omitempty" json:"labels,omitempty"`
	Annotations map[string]string `yaml:"annotations,omitempty" json:"annotations,omitempty"`
}

// Rules reads the rule files, in RuleFiles' order.
func Rules() ([]RuleGroups, error) {
	var all []RuleGroups
	for _, name := range RuleFiles {
		data, err := Files.ReadFile(name)
		if err != nil {
			return nil, err
		}
		var rg RuleGroups
		dec := yaml.NewDecoder(strings.NewReader(string(data)))
		dec.KnownFields(true)
		if err := dec.Decode(&rg); err != nil {
			return nil, fmt.Errorf("%s: %w", name, err)
		}
		all = append(all, rg)
	}
	return all, nil
}

// DashboardPanel is what the tests read of a Grafana panel.
type DashboardPanel struct {
	ID          int    `json:"id"`
	Type        string `json:"type"`
	Title       string `json:"title"`
	Description string `json:"description"`
	Targets     []struct {
		RefID string `json:"refId"`
		Expr  string `json:"expr"`
	} `json:"targets"`
}

// DashboardFile is what the tests read of the dashboard.
type DashboardFile struct {
	UID        string           `json:"uid"`
	Title      string           `json:"title"`
	Panels     []DashboardPanel `json:"panels"`
	Templating struct {
		List []struct {
			Name  string          `json:"name"`
			Type  string          `json:"type"`
			Query json.RawMessage `json:"query"`
		} `json:"list"`
	} `json:"templating"`
}

// ReadDashboard parses the dashboard.
func ReadDashboard() (*DashboardFile, error) {
	data, err := Files.ReadFile(Dashboard)
	if err != nil {
		return nil, err
	}
	var d DashboardFile
	if err := json.Unmarshal(data, &d); err != nil {
		return nil, fmt.Errorf("%s: %w", Dashboard, err)
	}
	return &d, nil
}

// Queries returns every PromQL expression of the dashboard and the rules.
func Queries() ([]Query, error) {
	d, err := ReadDashboard()
	if err != nil {
		return nil, err
	}
	var qs []Query
	for _, p := range d.Panels {
		for _, t := range p.Targets {
			qs = append(qs, Query{Where: "dashboard: " + p.Title, Expr: t.Expr})
		}
	}
	for _, v := range d.Templating.List {
		if expr, ok := labelValues(v.Query); ok {
			qs = append(qs, Query{Where: "dashboard: variable " + v.Name, Expr: expr})
		}
	}
	rules, err := Rules()
	if err != nil {
		return nil, err
	}
	for _, rg := range rules {
		for _, g := range rg.Groups {
			for _, r := range g.Rules {
				where := "alert: " + r.Alert
				if r.Record != "" {
					where = "record: " + r.Record
				}
				qs = append(qs, Query{Where: where, Expr: r.Expr, Record: r.Record, Labels: r.Labels})
			}
		}
	}
	return qs, nil
}

// labelValuesQuery is a Grafana variable's label_values(METRIC, LABEL).
var labelValuesQuery = regexp.MustCompile(`^\s*label_values\((.+),\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*\)\s*$`)

// labelValues reads a variable's query, a string or an object with a
// query, and returns its label_values as the PromQL that asks the same:
// count by (LABEL) (METRIC).
func labelValues(raw json.RawMessage) (string, bool) {
	var q string
	if json.Unmarshal(raw, &q) != nil {
		var obj struct {
			Query string `json:"query"`
		}
		if json.Unmarshal(raw, &obj) != nil {
			return "", false
		}
		q = obj.Query
	}
	m := labelValuesQuery.FindStringSubmatch(q)
	if m == nil {
		return "", false
	}
	return "count by (" + m[2] + ") (" + m[1] + ")", true
}

// Recorded returns the names the recording rules define.
func Recorded() ([]string, error) {
	rules, err := Rules()
	if err != nil {
		return nil, err
	}
	var names []string
	for _, rg := range rules {
		for _, g := range rg.Groups {
			for _, r := range g.Rules {
				if r.Record != "" {
					names = append(names, r.Record)
				}
			}
		}
	}
	return names, nil
}

// grafanaVariables stand in for the dashboard's variables, so that its
// queries parse as PromQL.
var grafanaVariables = strings.NewReplacer("$__rate_interval", "5m", "$__interval", "1m", "$tenant", "contoso")

// MetricNames parses expr and returns the metric names it selects, sorted.
func MetricNames(expr string) ([]string, error) {
	e, err := parser.NewParser(parser.Options{}).ParseExpr(grafanaVariables.Replace(expr))
	if err != nil {
		return nil, err
	}
	var names []string
	parser.Inspect(e, func(n parser.Node, _ []parser.Node) error {
		if vs, ok := n.(*parser.VectorSelector); ok && vs.Name != "" && !slices.Contains(names, vs.Name) {
			names = append(names, vs.Name)
		}
		return nil
	})
	slices.Sort(names)
	return names, nil
}
