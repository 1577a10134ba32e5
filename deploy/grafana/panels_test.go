package grafana

import (
	"encoding/json"
	"testing"
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
