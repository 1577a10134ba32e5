package app

import (
	"path/filepath"
	"testing"

	"github.com/contoso-secops/mde-offboard/internal/config"
)

// TestStartRefusesAMissingTokenFile: a tenant with workloadIdentity
// whose tokenFile is missing is a configuration error at start, naming
// the tenant and the setting, not the path. Before, the worker started
// and /readyz said ready; the file was first read at the tenant's first
// request, which failed.
func TestStartRefusesAMissingTokenFile(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	f, err := config.Parse([]byte(`tenants:
  - name: contoso
    tenantId: 11111111-1111-1111-1111-111111111111
    clientId: 22222222-2222-2222-2222-222222222222
    workloadIdentity: true
    tokenFile: ` + filepath.Join(dir, "azure-identity-token") + `
`))
	if err != nil {
		t.Fatal(err)
	}
	_, err = New(Options{Tenants: f})
	const want = "tenant contoso: credentials: tokenFile: the file it names could not be read: no such file or directory"
	if err == nil || err.Error() != want {
		t.Fatalf("New: err = %v, want %q", err, want)
	}
}
