package grafana

import (
	"bytes"
	"os"
	"strings"
	"testing"
)

// TestFileIsGenerated fails while mde-offboard.json differs from what
// Dashboard builds: the file is changed by changing dashboard.go and
// running `make dashboard`, never by hand.
func TestFileIsGenerated(t *testing.T) {
	want, err := JSON()
	if err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(File)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Equal(got, want) {
		return
	}
	gotLines, wantLines := strings.Split(string(got), "\n"), strings.Split(string(want), "\n")
	line := 0
	for line < len(gotLines) && line < len(wantLines) && gotLines[line] == wantLines[line] {
		line++
	}
	at := func(lines []string) string {
		if line < len(lines) {
			return strings.TrimSpace(lines[line])
		}
		return "(end of file)"
	}
	t.Errorf("deploy/grafana/%s is not what deploy/grafana/dashboard.go generates (line %d: have %q, generated %q): run make dashboard",
		File, line+1, at(gotLines), at(wantLines))
}

// TestJSONStable builds the dashboard twice: the same bytes, so that the
// file changes only when the dashboard does.
func TestJSONStable(t *testing.T) {
	a, err := JSON()
	if err != nil {
		t.Fatal(err)
	}
	b, err := JSON()
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(a, b) {
		t.Error("two builds of the dashboard differ")
	}
	if !bytes.HasSuffix(a, []byte("}\n")) {
		t.Error("the JSON does not end in a newline")
	}
}

func TestUnescapeHTML(t *testing.T) {
	for in, want := range map[string]string{
		`"a \u003e 0 \u0026\u0026 b \u003c 1"`: `"a > 0 && b < 1"`,
		`"\\u003e"`:                            `"\\u003e"`, // a backslash, then the text u003e
		`"\u00e9 \" \\"`:                       `"\u00e9 \" \\"`,
		`"\`:                                   `"\`,
	} {
		if got := string(unescapeHTML([]byte(in))); got != want {
			t.Errorf("unescapeHTML(%s) = %s, want %s", in, got, want)
		}
	}
}
