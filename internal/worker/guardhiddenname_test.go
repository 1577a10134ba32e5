package worker

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/contoso-secops/mde-offboard/internal/config"
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
	const id = "1e5bc9d7e413ddd7902c2932e418702b84d0cc07"
	now := time.Date(2026, 11, 24, 10, 0, 0, 0, time.UTC)
	g := &config.Guards{Protect: config.Protect{ComputerDNSNames: []string{"dc*.contoso.local"}}}
	for _, tc := range []struct {
		name, dnsName, rule string
	}{
		{"zero-width space", "\u200b", offboard.RuleComputerDNSNames},
		{"byte order mark", "\ufeff", offboard.RuleComputerDNSNames},
		{"control character", "\u0000", offboard.RuleComputerDNSNames},
		{"soft hyphen and spaces", " \u00ad ", offboard.RuleComputerDNSNames},
		{"hidden characters and a final dot", "\u200b.", offboard.RuleComputerDNSNames},
		{"another name, hidden characters", "\u200bws01.contoso.local", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			name, _ := json.Marshal(tc.dnsName)
			refusalOfRecord(t, g, id, `{"id":"`+id+`","computerDnsName":`+string(name)+`}`, now, tc.rule)
		})
	}
}
