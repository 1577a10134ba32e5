package app

import (
	"strings"
	"testing"
	"time"

	"github.com/contoso-secops/mde-offboard/internal/config"
)

// TestQuotaHistoryErrorNamesTheWindow: a window longer than the quota
// journal keeps is named by its tenant, API and value: the error gave
// the longest of all the file's windows alone, and with many tenants
// the one to change had to be looked for.
func TestQuotaHistoryErrorNamesTheWindow(t *testing.T) {
	t.Parallel()
	f, err := config.Parse([]byte(`tenants:
  - name: contoso
    tenantId: 11111111-2222-3333-4444-555555555555
    clientId: 66666666-7777-8888-9999-000000000000
    clientSecretEnv: MDE_TEST_UNSET_SECRET
  - name: fabrikam
    tenantId: 11111111-2222-3333-4444-555555555556
    clientId: 66666666-7777-8888-9999-000000000000
    clientSecretEnv: MDE_TEST_UNSET_SECRET
    limits: {offboard: ["100/1m", "1500/1h"], machines: ["100/1m", "10/3h"]}
`))
	if err != nil {
		t.Fatal(err)
	}
	o := Options{CallTimeout: 30 * time.Second}
	o.Queue.QuotaHistory = 2 * time.Hour
	err = CheckConfig(f, o)
	want := "tenant fabrikam: limits.machines 10/3h0m0s: quota history 2h0m0s is shorter than the window plus the call lease, and the margin (3h0m45.5s): raise --quota-history"
	if err == nil || err.Error() != want {
		t.Errorf("CheckConfig = %v, want %q", err, want)
	}
	o.Queue.QuotaHistory = 4 * time.Hour
	if err := CheckConfig(f, o); err != nil {
		t.Errorf("with --quota-history 4h: %v", err)
	}
	// Shorter than a 429's longest pause: the flag is wrong, whatever the
	// windows, and no tenant is named.
	o.Queue.QuotaHistory = 30 * time.Minute
	for _, file := range []*config.File{f, {}} {
		if err := CheckConfig(file, o); err == nil || strings.Contains(err.Error(), "tenant") {
			t.Errorf("%d tenant(s), --quota-history 30m: %v, want an error naming no tenant", len(file.Tenants), err)
		}
	}
}
