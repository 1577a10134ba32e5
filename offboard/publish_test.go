package offboard

import (
	"strings"
	"testing"
)

// A tenant or a priority that would make another subject than the
// contract's (another priority's, a wildcard, none) is refused before
// anything is sent: js is nil here, and a publish would panic.
func TestPublishRefusesWhatMakesAnotherSubject(t *testing.T) {
	t.Parallel()
	r := Request{RequestID: "chg-1", MachineID: strings.Repeat("a", 40)}
	for _, tc := range []struct {
		tenant string
		p      Priority
		want   string
	}{
		{"contoso.bulk", Normal, "is not a tenant name"},
		{"*", Normal, "is not a tenant name"},
		{">", Bulk, "is not a tenant name"},
		{"", Normal, "is not a tenant name"},
		{"Contoso", Normal, "is not a tenant name"},
		{"contoso", "urgent", "is neither normal nor bulk"},
		{"contoso", "", "is neither normal nor bulk"},
	} {
		_, err := Publish(t.Context(), nil, Subjects{}, tc.tenant, tc.p, r)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("tenant %q, priority %q: error %v, want %q", tc.tenant, tc.p, err, tc.want)
		}
	}
}
