package deploy

import (
	"os"
	"regexp"
	"strings"
	"testing"
)

// TestDashboard parses the dashboard: a tenant variable, every panel
// titled and described, every query valid PromQL.
func TestDashboard(t *testing.T) {
	d, err := ReadDashboard()
	if err != nil {
		t.Fatal(err)
	}
	if d.UID == "" || d.Title == "" {
		t.Error("the dashboard has no uid or title")
	}
	var tenant bool
	for _, v := range d.Templating.List {
		tenant = tenant || (v.Name == "tenant" && v.Type == "query")
	}
	if !tenant {
		t.Error("no tenant variable")
	}
	ids := map[int]bool{}
	for _, p := range d.Panels {
		if ids[p.ID] {
			t.Errorf("panel id %d repeats", p.ID)
		}
		ids[p.ID] = true
		if p.Type == "row" {
			continue
		}
		if p.Title == "" || p.Description == "" || len(p.Targets) == 0 {
			t.Errorf("panel %d (%q): want a title, a description and a query", p.ID, p.Title)
		}
		for _, target := range p.Targets {
			if _, err := MetricNames(target.Expr); err != nil {
				t.Errorf("panel %q: %s: %v", p.Title, target.Expr, err)
			}
		}
	}
}

// TestRulesParse parses every alert and recording rule expression.
func TestRulesParse(t *testing.T) {
	qs, err := Queries()
	if err != nil {
		t.Fatal(err)
	}
	for _, q := range qs {
		names, err := MetricNames(q.Expr)
		if err != nil {
			t.Errorf("%s: %v", q.Where, err)
		}
		if len(names) == 0 {
			t.Errorf("%s names no metric", q.Where)
		}
	}
}

// TestRunbooks checks every alert has a runbook_url whose anchor is a
// heading of the README (GitHub's anchors: lower case, spaces to dashes,
// punctuation dropped).
func TestRunbooks(t *testing.T) {
	readme, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	anchors := map[string]bool{}
	drop := regexp.MustCompile(`[^a-z0-9 _-]`)
	for line := range strings.SplitSeq(string(readme), "\n") {
		if title, ok := strings.CutPrefix(strings.TrimLeft(line, "#"), " "); ok && strings.HasPrefix(line, "#") {
			anchors[strings.ReplaceAll(drop.ReplaceAllString(strings.ToLower(title), ""), " ", "-")] = true
		}
	}
	rules, err := Rules()
	if err != nil {
		t.Fatal(err)
	}
	const base = "https://github.com/contoso-secops/mde-offboard/blob/main/README.md#"
	for _, rg := range rules {
		for _, g := range rg.Groups {
			for _, r := range g.Rules {
				if r.Alert == "" {
					continue
				}
				url := r.Annotations["runbook_url"]
				anchor, ok := strings.CutPrefix(url, base)
				if !ok || !anchors[anchor] {
					t.Errorf("alert %s: runbook_url %q is not a README section", r.Alert, url)
				}
			}
		}
	}
}

// notOnTheDashboard are the metrics the dashboard shows in no panel, and
// why.
var notOnTheDashboard = map[string]string{
	"mde_offboard_requests_received_total": "redeliveries included: Results by outcome and In flight show the flow",
}

// TestEveryMetricOnTheDashboard: each metric of the README's table is
// shown by a panel, directly or through a recorded series, or listed in
// notOnTheDashboard with the reason.
func TestEveryMetricOnTheDashboard(t *testing.T) {
	readme, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	documented := regexp.MustCompile("(?m)^\\| `(mde_offboard_[a-z_]+)`").FindAllStringSubmatch(string(readme), -1)
	if len(documented) < 20 {
		t.Fatalf("the README's metrics table lists %d metrics, want its whole table", len(documented))
	}
	qs, err := Queries()
	if err != nil {
		t.Fatal(err)
	}
	recorded := map[string][]string{}
	var panels []string
	for _, q := range qs {
		names, err := MetricNames(q.Expr)
		if err != nil {
			t.Fatalf("%s: %v", q.Where, err)
		}
		switch {
		case q.Record != "":
			recorded[q.Record] = append(recorded[q.Record], names...)
		case strings.HasPrefix(q.Where, "dashboard: ") && !strings.HasPrefix(q.Where, "dashboard: variable "):
			panels = append(panels, names...)
		}
	}
	shown := map[string]bool{}
	var show func(name string)
	show = func(name string) {
		if shown[name] {
			return
		}
		shown[name] = true
		for _, n := range recorded[name] {
			show(n)
		}
	}
	for _, n := range panels {
		show(n)
	}
	for _, m := range documented {
		name := m[1]
		_, excused := notOnTheDashboard[name]
		if !shown[name] && !shown[name+"_bucket"] && !excused {
			t.Errorf("%s is on no panel of the dashboard", name)
		}
		if shown[name] && excused {
			t.Errorf("%s is on the dashboard and listed in notOnTheDashboard", name)
		}
	}
}
