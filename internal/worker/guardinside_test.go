package worker

import (
	"testing"

	"github.com/contoso-secops/mde-offboard/offboard"
)

// TestGuardWhiteSpaceInsideTheName: a computerDnsName the API gives with
// a control character that is white space (a tab, a carriage return, a
// line feed) or another space inside it, which no DNS name holds and one
// does not see, is matched against the globs as the name it spells: each
// used to match no glob, and the device was offboarded.
func TestGuardWhiteSpaceInsideTheName(t *testing.T) {
	t.Parallel()
	checkNames(t, []string{"dc*.contoso.local", "sql01"}, []nameCase{
		{"tab before the domain", "dc01\t.contoso.local", offboard.RuleComputerDNSNames},
		{"carriage return inside", "dc0\r1.contoso.local", offboard.RuleComputerDNSNames},
		{"line feed inside the domain", "dc01.contoso\n.local", offboard.RuleComputerDNSNames},
		{"no-break space inside", "dc01\u00a0.contoso.local", offboard.RuleComputerDNSNames},
		{"ideographic space inside", "dc01.con\u3000toso.local", offboard.RuleComputerDNSNames},
		{"host glob, tab inside the host", "sql\t01.contoso.local", offboard.RuleComputerDNSNames},
		{"host glob, carriage return after the host", "sql01\r.contoso.local", offboard.RuleComputerDNSNames},
		{"another host", "ws\t01.contoso.local", ""},
	})
}
