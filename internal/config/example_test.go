package config

import (
	"os"
	"reflect"
	"regexp"
	"strings"
	"testing"
)

// TestDeployExampleExplainsEveryKey: deploy/worker.yaml, the tenants file
// operators start from, shows every key a tenant takes, set or in a
// comment, but tracking (deploy/README.md says so; the main README
// explains it). guards.budget was missing: the one guard that caps how
// many devices go was nowhere in the example.
func TestDeployExampleExplainsEveryKey(t *testing.T) {
	t.Parallel()
	data, err := os.ReadFile("../../deploy/worker.yaml")
	if err != nil {
		t.Fatal(err)
	}
	for _, key := range yamlKeys(reflect.TypeFor[Tenant](), "") {
		if key == "tracking" || strings.HasPrefix(key, "tracking.") {
			continue
		}
		name := key[strings.LastIndexByte(key, '.')+1:]
		if !regexp.MustCompile(`(?m)^\s*(?:#\s*)?(?:- )?` + regexp.QuoteMeta(name) + `:`).Match(data) {
			t.Errorf("deploy/worker.yaml shows no %s", key)
		}
	}
}

// yamlKeys lists the YAML keys of the struct type t, those of nested
// structs under their parent's key.
func yamlKeys(t reflect.Type, parent string) []string {
	var keys []string
	for f := range t.Fields() {
		name, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
		if name == "" || name == "-" {
			continue
		}
		key := parent + name
		keys = append(keys, key)
		if ft := f.Type; ft.Kind() == reflect.Struct {
			keys = append(keys, yamlKeys(ft, key+".")...)
		}
	}
	return keys
}
