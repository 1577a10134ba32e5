package config

import (
	"slices"
	"testing"
)

// TestGlobDashes: a glob written with a hyphen other than the
// hyphen-minus (an en dash a word processor wrote, a non-breaking
// hyphen, a minus sign), which no DNS name holds, is taken with the
// hyphen-minus: kept as written, it matched no computerDnsName the API
// gives, and the device passed.
func TestGlobDashes(t *testing.T) {
	t.Parallel()
	f, err := Parse([]byte("tenants:" + okTenant + `    guards:
      protect:
        computerDnsNames: ["dc\u201301*", "sql\u201101.contoso.local", "app\u22121", "web\u20101"]
`))
	if err != nil {
		t.Fatal(err)
	}
	got := f.Tenants[0].Guards.Protect.ComputerDNSNames
	if want := []string{"dc-01*", "sql-01.contoso.local", "app-1", "web-1"}; !slices.Equal(got, want) {
		t.Errorf("computerDnsNames = %q, want %q", got, want)
	}
}
