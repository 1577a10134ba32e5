package worker

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/contoso-secops/mde-offboard/internal/config"
	"github.com/contoso-secops/mde-offboard/offboard"
)

// TestGuardWhiteSpaceInsideTheName: a computerDnsName the API gives with
// a control character that is white space (a tab, a carriage return, a
// line feed) or another space inside it, which no DNS name holds and one
// does not see, is matched against the globs as the name it spells: each
// used to match no glob, and the device was offboarded.
func TestGuardWhiteSpaceInsideTheName(t *testing.T) {
	t.Parallel()
	const id = "1e5bc9d7e413ddd7902c2932e418702b84d0cc07"
	now := time.Date(2026, 11, 24, 10, 0, 0, 0, time.UTC)
	g := &config.Guards{Protect: config.Protect{ComputerDNSNames: []string{"dc*.contoso.local", "sql01"}}}
	for _, tc := range []struct {
		name, dnsName, rule string
	}{
		{"tab before the domain", "dc01\t.contoso.local", offboard.RuleComputerDNSNames},
		{"carriage return inside", "dc0\r1.contoso.local", offboard.RuleComputerDNSNames},
		{"line feed inside the domain", "dc01.contoso\n.local", offboard.RuleComputerDNSNames},
		{"no-break space inside", "dc01\u00a0.contoso.local", offboard.RuleComputerDNSNames},
		{"ideographic space inside", "dc01.con\u3000toso.local", offboard.RuleComputerDNSNames},
		{"host glob, tab inside the host", "sql\t01.contoso.local", offboard.RuleComputerDNSNames},
		{"host glob, carriage return after the host", "sql01\r.contoso.local", offboard.RuleComputerDNSNames},
		{"another host", "ws\t01.contoso.local", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			name, _ := json.Marshal(tc.dnsName)
			refusalOfRecord(t, g, id, `{"id":"`+id+`","computerDnsName":`+string(name)+`}`, now, tc.rule)
		})
	}
}
