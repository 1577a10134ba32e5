package worker

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/contoso-secops/mde-offboard/internal/config"
	"github.com/contoso-secops/mde-offboard/offboard"
)

// TestGuardDashesInTheName: a computerDnsName the API gives with a
// hyphen other than the hyphen-minus (a non-breaking hyphen, an en dash:
// a name pasted from a word processor into an inventory), which no DNS
// name holds, is matched as the name it spells, as a glob written so is
// (TestGlobDashes): each used to match no glob, and the device was
// offboarded.
func TestGuardDashesInTheName(t *testing.T) {
	t.Parallel()
	const id = "1e5bc9d7e413ddd7902c2932e418702b84d0cc07"
	now := time.Date(2026, 11, 24, 10, 0, 0, 0, time.UTC)
	g := &config.Guards{Protect: config.Protect{ComputerDNSNames: []string{"dc-*.contoso.local", "sql-01"}}}
	for _, tc := range []struct {
		name, dnsName, rule string
	}{
		{"non-breaking hyphen", "dc\u201101.contoso.local", offboard.RuleComputerDNSNames},
		{"hyphen", "DC\u201001.contoso.local", offboard.RuleComputerDNSNames},
		{"en dash, host glob", "sql\u201301.fabrikam.local", offboard.RuleComputerDNSNames},
		{"minus sign", "dc\u221201.contoso.local", offboard.RuleComputerDNSNames},
		{"another host", "ws\u201101.contoso.local", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			name, _ := json.Marshal(tc.dnsName)
			refusalOfRecord(t, g, id, `{"id":"`+id+`","computerDnsName":`+string(name)+`}`, now, tc.rule)
		})
	}
}
