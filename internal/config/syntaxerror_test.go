package config

import (
	"strings"
	"testing"
)

// TestParseSyntaxErrorSaysWhatIsExpected: the decoder's syntax errors
// quote the character it expected (could not find expected ':', did not
// find expected ',' or ']'); the anchor names taken out of its errors
// took those along, and left "could not find expected" and nothing
// after. An alias's name, which may be a secret written after a '*',
// is still left out.
func TestParseSyntaxErrorSaysWhatIsExpected(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ yaml, want, not string }{
		{"tenants:\n  - name: contoso\n    s3cret-value\n", "could not find expected ':'", "s3cret"},
		{"tenants: [a, b\n", "did not find expected ',' or ']'", ""},
		{"tenants: *s3cret-value\n", "unknown anchor referenced", "s3cret"},
		{"tenants:\n  - name: contoso\n    tenantId: x\n    s3cret-value\n    clientId: y\n", "could not find expected", "s3cret"},
	} {
		_, err := Parse([]byte(tc.yaml))
		if err == nil || !strings.Contains(err.Error(), tc.want) || tc.not != "" && strings.Contains(err.Error(), tc.not) {
			t.Errorf("%q: Parse error = %v, want one containing %q and not %q", tc.yaml, err, tc.want, tc.not)
		}
	}
}
