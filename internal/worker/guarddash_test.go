package worker

import (
	"testing"

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
	checkNames(t, []string{"dc-*.contoso.local", "sql-01"}, []nameCase{
		{"non-breaking hyphen", "dc\u201101.contoso.local", offboard.RuleComputerDNSNames},
		{"hyphen", "DC\u201001.contoso.local", offboard.RuleComputerDNSNames},
		{"en dash, host glob", "sql\u201301.fabrikam.local", offboard.RuleComputerDNSNames},
		{"minus sign", "dc\u221201.contoso.local", offboard.RuleComputerDNSNames},
		{"another host", "ws\u201101.contoso.local", ""},
	})
}
