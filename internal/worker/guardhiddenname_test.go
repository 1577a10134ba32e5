package worker

import (
	"testing"

	"github.com/contoso-secops/mde-offboard/offboard"
)

// TestGuardDeviceNamedWithHiddenCharactersAlone: a computerDnsName the
// API gives that holds nothing one sees (a zero-width space, a byte order
// mark, a control character, a soft hyphen, with white space or not) is
// no name, as a blank one is: with host name globs set the device is
// refused, as a device group name so written is taken for none. Each used
// to match no glob, and the device was offboarded.
func TestGuardDeviceNamedWithHiddenCharactersAlone(t *testing.T) {
	t.Parallel()
	checkNames(t, []string{"dc*.contoso.local"}, []nameCase{
		{"zero-width space", "\u200b", offboard.RuleComputerDNSNames},
		{"byte order mark", "\ufeff", offboard.RuleComputerDNSNames},
		{"control character", "\u0000", offboard.RuleComputerDNSNames},
		{"soft hyphen and spaces", " \u00ad ", offboard.RuleComputerDNSNames},
		{"hidden characters and a final dot", "\u200b.", offboard.RuleComputerDNSNames},
		{"another name, hidden characters", "\u200bws01.contoso.local", ""},
	})
}
