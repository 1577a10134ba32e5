package config

import (
	"strings"
	"testing"
)

// TestParseTabIndentationSaysSo: YAML indents with spaces only. A line
// indented with a tab (an editor's habit, a file pasted from a page) got
// the decoder's "found character that cannot start any token", which
// names no tab; the error now says the line is indented with one. (A
// tab deeper in, after spaces, the decoder names itself.)
func TestParseTabIndentationSaysSo(t *testing.T) {
	t.Parallel()
	for _, data := range []string{
		"tenants:\n\t- name: contoso\n",
		"tenants:\n  - name: contoso\n  \ttenantId: 11111111-2222-3333-4444-555555555555\n",
	} {
		_, err := Parse([]byte(data))
		if err == nil || !strings.Contains(err.Error(), "tab") {
			t.Errorf("%q: Parse error = %v, want one naming the tab", data, err)
		}
	}
}
