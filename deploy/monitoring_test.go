package deploy

import (
	"bytes"
	"flag"
	"os"
	"reflect"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"
)

var update = flag.Bool("update", false, "rewrite the generated files (kubernetes/monitoring/prometheusrule.yaml)")

const prometheusRuleFile = "kubernetes/monitoring/prometheusrule.yaml"

// prometheusRule renders the PrometheusRule from the plain rule files,
// keeping their comments: their groups, indented under spec.
func prometheusRule(t *testing.T) []byte {
	t.Helper()
	var b bytes.Buffer
	b.WriteString(`# GENERATED from deploy/prometheus/alerts.yaml and rules.yaml by
#   go test ./deploy -run TestPrometheusRule -update
# Do not edit: change the plain files and run the command above.
apiVersion: monitoring.coreos.com/v1
kind: PrometheusRule
metadata:
  name: mde-offboard
  labels:
    app.kubernetes.io/name: mde-offboard
    app.kubernetes.io/component: worker
spec:
  groups:
`)
	for _, name := range RuleFiles {
		data, err := Files.ReadFile(name)
		if err != nil {
			t.Fatal(err)
		}
		_, groups, ok := strings.Cut(string(data), "\ngroups:\n")
		if !ok {
			t.Fatalf("%s: no top-level groups:", name)
		}
		for line := range strings.SplitAfterSeq(groups, "\n") {
			if strings.TrimSpace(line) == "" {
				b.WriteString(line)
				continue
			}
			b.WriteString("  " + line)
		}
	}
	return b.Bytes()
}

// TestPrometheusRule checks that the prometheus-operator's PrometheusRule
// holds the same rules as the plain files: the generated text, and the
// parsed groups.
func TestPrometheusRule(t *testing.T) {
	want := prometheusRule(t)
	if *update {
		if err := os.WriteFile(prometheusRuleFile, want, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	got, err := os.ReadFile(prometheusRuleFile)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s is not generated from the plain rule files: go test ./deploy -run TestPrometheusRule -update", prometheusRuleFile)
	}
	var pr struct {
		APIVersion string `yaml:"apiVersion"`
		Kind       string `yaml:"kind"`
		Metadata   struct {
			Name   string            `yaml:"name"`
			Labels map[string]string `yaml:"labels"`
		} `yaml:"metadata"`
		Spec RuleGroups `yaml:"spec"`
	}
	dec := yaml.NewDecoder(bytes.NewReader(got))
	dec.KnownFields(true)
	if err := dec.Decode(&pr); err != nil {
		t.Fatal(err)
	}
	plain, err := Rules()
	if err != nil {
		t.Fatal(err)
	}
	var groups []RuleGroup
	for _, rg := range plain {
		groups = append(groups, rg.Groups...)
	}
	if !reflect.DeepEqual(pr.Spec.Groups, groups) {
		t.Error("the PrometheusRule's groups differ from the plain rule files'")
	}
}

// TestServiceMonitor checks the ServiceMonitor selects the Service and
// scrapes its metrics port.
func TestServiceMonitor(t *testing.T) {
	var sm struct {
		Kind string `yaml:"kind"`
		Spec struct {
			JobLabel string `yaml:"jobLabel"`
			Selector struct {
				MatchLabels map[string]string `yaml:"matchLabels"`
			} `yaml:"selector"`
			Endpoints []struct {
				Port          string `yaml:"port"`
				Path          string `yaml:"path"`
				Interval      string `yaml:"interval"`
				ScrapeTimeout string `yaml:"scrapeTimeout"`
			} `yaml:"endpoints"`
		} `yaml:"spec"`
	}
	data, err := os.ReadFile("kubernetes/monitoring/servicemonitor.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.Unmarshal(data, &sm); err != nil {
		t.Fatal(err)
	}
	svc := renderKustomization(t, "kubernetes").service(t, "mde-offboard")
	for k, v := range sm.Spec.Selector.MatchLabels {
		if svc.Labels[k] != v {
			t.Errorf("ServiceMonitor selects %s=%s; the Service has %q", k, v, svc.Labels[k])
		}
	}
	if svc.Labels[sm.Spec.JobLabel] != "mde-offboard" {
		t.Errorf("job label %s of the Service is %q, want mde-offboard (the alerts' job)", sm.Spec.JobLabel, svc.Labels[sm.Spec.JobLabel])
	}
	if len(sm.Spec.Endpoints) != 1 || sm.Spec.Endpoints[0].Port != svc.Spec.Ports[0].Name {
		t.Errorf("ServiceMonitor endpoints %+v do not name the Service's port %s", sm.Spec.Endpoints, svc.Spec.Ports[0].Name)
	}
}
