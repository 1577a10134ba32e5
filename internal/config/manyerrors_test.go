package config

import (
	"fmt"
	"strings"
	"testing"
)

// TestParseErrorsAreBounded: a file whose every tenant is wrong (a
// template's variable that expanded to nothing in each entry) gave one
// error per tenant, megabytes on one line at thousands of tenants, which
// a log pipeline cuts or drops. The first few are given, then how many
// more there are.
func TestParseErrorsAreBounded(t *testing.T) {
	t.Parallel()
	var entries, typed strings.Builder
	for i := range 1000 {
		entries.WriteString(strings.Replace(otherTenant(fmt.Sprintf("t%d", i)), "tenantId: ", "tenantId: x", 1))
		typed.WriteString(otherTenant(fmt.Sprintf("t%d", i)) + "    maxInFlight: \"4\"\n")
	}
	for name, file := range map[string]string{"checks": entries.String(), "types": typed.String()} {
		_, err := Parse([]byte("tenants:" + file))
		if err == nil {
			t.Fatalf("%s: no error", name)
		}
		msg := err.Error()
		if lines := strings.Count(msg, "\n") + 1; lines > maxErrors+2 || len(msg) > 4096 {
			t.Errorf("%s: %d lines, %d bytes; want at most %d lines", name, lines, len(msg), maxErrors+2)
		}
		if want := fmt.Sprintf("and %d more", 1000-maxErrors); !strings.HasSuffix(msg, want) {
			t.Errorf("%s: error ends %q, want %q", name, msg[max(0, len(msg)-80):], want)
		}
	}
}
