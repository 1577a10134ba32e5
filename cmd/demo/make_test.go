package main

import (
	"os"
	"strings"
	"testing"
)

// TestMakeDemoRunsTheDemoItself: make demo builds the demo and runs the
// binary, not go run. A Ctrl-C reaches every process of the terminal's
// foreground group, and go run, given one, exits 1 whatever the demo's
// own exit: a DEMO_KEEP run stopped cleanly (exit 0) ended "make: ***
// [Makefile:15: demo] Error 1", and an interrupted one exit 1, not 130.
func TestMakeDemoRunsTheDemoItself(t *testing.T) {
	data, err := os.ReadFile("../../Makefile")
	if err != nil {
		t.Fatal(err)
	}
	var recipe []string
	in := false
	for line := range strings.Lines(string(data)) {
		switch {
		case strings.HasPrefix(line, "demo:"):
			in = true
		case in && strings.HasPrefix(line, "\t"):
			recipe = append(recipe, strings.TrimSpace(line))
		case in:
			in = false
		}
	}
	if len(recipe) == 0 {
		t.Fatal("Makefile: no recipe for demo")
	}
	for _, cmd := range recipe {
		if strings.Contains(cmd, " run ") {
			t.Errorf("Makefile: demo runs %q: a Ctrl-C ends go run with exit 1", cmd)
		}
	}
	if last := recipe[len(recipe)-1]; last != "$(BIN)/demo" {
		t.Errorf("Makefile: demo ends with %q, want the binary built, $(BIN)/demo", last)
	}
}
