package grafana

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/prometheus/prometheus/promql/parser"
)

// panel is what these tests read of a panel in the generated JSON.
type panel struct {
	Title       string `json:"title"`
	Type        string `json:"type"`
	FieldConfig struct {
		Defaults struct {
			Unit string `json:"unit"`
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

// TestSecondsShownAsSeconds: a query of a metric in seconds is shown with
// the unit s, not as a bare number beside other series.
func TestSecondsShownAsSeconds(t *testing.T) {
	vars := strings.NewReplacer("$__rate_interval", "5m", "$tenant", "contoso")
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
// NaN; the panel lists the tenants with one, not every tenant as NaN. The
// query is evaluated by promtool, as a recording rule.
func TestBudgetLeftOnlyBudgetedTenants(t *testing.T) {
	promtool, err := exec.LookPath("promtool")
	if err != nil {
		t.Skip("promtool not installed (make check-alerts installs it)")
	}
	p := panelTitled(t, "Budget left")
	expr := strings.ReplaceAll(p.Targets[0].Expr, "$tenant", ".*")
	dir := t.TempDir()
	rules := "groups:\n  - name: panel\n    rules:\n      - record: panel\n        expr: " + strconv.Quote(expr) + "\n"
	test := `rule_files: [rules.yaml]
evaluation_interval: 1m
tests:
  - interval: 1m
    input_series:
      - series: 'mde_offboard_budget_remaining{instance="a", tenant="contoso"}'
        values: 'NaN NaN'
      - series: 'mde_offboard_budget_remaining{instance="b", tenant="contoso"}'
        values: 'NaN NaN'
      - series: 'mde_offboard_budget_remaining{instance="a", tenant="woodgrove"}'
        values: '3 2'
      - series: 'mde_offboard_budget_remaining{instance="b", tenant="woodgrove"}'
        values: '3 3'
      - series: 'mde_offboard_budget_remaining{instance="a", tenant="fabrikam"}'
        values: '0 0'
    promql_expr_test:
      - expr: panel
        eval_time: 1m
        exp_samples:
          - labels: 'panel{tenant="woodgrove"}'
            value: 2
          - labels: 'panel{tenant="fabrikam"}'
            value: 0
`
	for name, data := range map[string]string{"rules.yaml": rules, "test.yaml": test} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(data), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	cmd := exec.Command(promtool, "test", "rules", "test.yaml")
	cmd.Dir = dir
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Errorf("Budget left (%s) over a tenant without a budget (NaN), one with and one spent: %v\n%s", p.Targets[0].Expr, err, out)
	}
}
