package config

import (
	"path"
	"slices"
	"testing"
)

// TestGlobIdeographicFullStops: a glob written with ideographic full
// stops (as a Japanese or Chinese input method types the period, in full
// or half width), which DNS reads as dots (UTS #46, as the device's name
// is read), is taken with dots: it used to be kept as written, and
// matched no computerDnsName the API gives, so the device passed.
func TestGlobIdeographicFullStops(t *testing.T) {
	t.Parallel()
	f, err := Parse([]byte("tenants:" + okTenant + `    guards:
      protect:
        computerDnsNames: ["dc01\u3002contoso\u3002local", "*\uff61tier0\uff61contoso\uff61local", "sql*.contoso.local\u3002"]
`))
	if err != nil {
		t.Fatal(err)
	}
	got := f.Tenants[0].Guards.Protect.ComputerDNSNames
	if want := []string{"dc01.contoso.local", "*.tier0.contoso.local", "sql*.contoso.local"}; !slices.Equal(got, want) {
		t.Errorf("computerDnsNames = %q, want %q", got, want)
	}
	for i, name := range []string{"dc01.contoso.local", "app1.tier0.contoso.local", "sql01.contoso.local"} {
		if ok, _ := path.Match(got[i], name); !ok {
			t.Errorf("glob %q does not match %s", got[i], name)
		}
	}
	if _, err := Parse([]byte("tenants:" + okTenant + "    guards:\n      protect:\n        computerDnsNames: [\"\u3002tier0.contoso.local\"]\n")); err == nil {
		t.Error("a glob starting with an ideographic full stop was taken")
	}
}
