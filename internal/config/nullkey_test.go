package config

import (
	"strings"
	"testing"
)

// TestParseRefusesANullKey: a key written ~ or null (or a ? with no key)
// is no key the file knows, yet the decoder drops such an entry, value
// and all, without a word, where a misspelt key is refused: a limit
// under it was not applied, and the defaults were. It is refused,
// naming its line and place.
func TestParseRefusesANullKey(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ yaml, want string }{
		{"tenants:" + okTenant + "    ~: 5\n", "line 6: tenants[0] has a key of no name"},
		{"tenants:" + okTenant + "    null: 5\n", "line 6: tenants[0] has a key of no name"},
		{"tenants:" + okTenant + "    limits: {~: [1/1ns]}\n", "line 6: tenants[0].limits has a key of no name"},
		{"tenants:" + okTenant + "    guards:\n      ?\n      : {protect: {machineTags: [a]}}\n", "line 7: tenants[0].guards has a key of no name"},
		{"~: 1\ntenants:" + okTenant, "line 1: the file has a key of no name"},
	} {
		_, err := Parse([]byte(tc.yaml))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: Parse error = %v, want one holding %q", tc.yaml[len(tc.yaml)-30:], err, tc.want)
		}
	}
}
