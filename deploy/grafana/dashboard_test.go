package grafana

import (
	"bytes"
	"testing"
)

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
