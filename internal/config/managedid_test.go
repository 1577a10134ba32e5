package config

import (
	"strings"
	"testing"
)

// TestParseManagedIdentityClientIDIsAGUID: with managedIdentity, clientId
// may be left out (the system-assigned identity), but one given picks a
// user-assigned identity by its client id, a GUID. Anything else was
// taken, sent to the identity endpoint as the client id at the first
// call, and every call failed; a secret pasted there would have gone
// along. The value is not quoted.
func TestParseManagedIdentityClientIDIsAGUID(t *testing.T) {
	const tenant = "tenants:\n  - name: contoso\n    tenantId: 11111111-2222-3333-4444-555555555555\n    managedIdentity: true\n"
	for _, ok := range []string{"", "    clientId: 66666666-7777-8888-9999-000000000000\n"} {
		if _, err := Parse([]byte(tenant + ok)); err != nil {
			t.Errorf("managedIdentity with %q: %v", ok, err)
		}
	}
	for _, bad := range []string{"Zx9~SECRET-pasted", "/subscriptions/0/resourceGroups/rg/providers/Microsoft.ManagedIdentity/userAssignedIdentities/SECRET", "66666666-7777-8888-9999-00000000000"} {
		_, err := Parse([]byte(tenant + "    clientId: \"" + bad + "\"\n"))
		if err == nil || !strings.Contains(err.Error(), `tenant 1 ("contoso"): clientId must be a GUID`) {
			t.Errorf("managedIdentity with clientId %.12q...: err = %v, want clientId must be a GUID", bad, err)
		}
		if err != nil && strings.Contains(err.Error(), "SECRET") {
			t.Errorf("error %q shows the value", err)
		}
	}
}

// TestOneManagedIdentityForTwoTenants: a managed identity gets tokens of
// its own Entra ID tenant only, whatever tenantId says. Two names of one
// identity with other tenantIds were taken, and both acted in the
// identity's tenant: a request to the one offboarded a device of the
// other, past the guards the other's name gives. They are refused; two
// identities (user-assigned, by their client ids) are not.
func TestOneManagedIdentityForTwoTenants(t *testing.T) {
	t.Parallel()
	tenant := func(name, tenantID, clientID string) string {
		s := "  - name: " + name + "\n    tenantId: " + tenantID + "\n    managedIdentity: true\n"
		if clientID != "" {
			s += "    clientId: " + clientID + "\n"
		}
		return s
	}
	const (
		home, other = "11111111-2222-3333-4444-555555555555", "11111111-2222-3333-4444-666666666666"
		id1, id2    = "66666666-7777-8888-9999-000000000001", "66666666-7777-8888-9999-000000000002"
	)
	for _, tc := range []struct{ name, file string }{
		{"system-assigned", tenant("contoso", home, "") + tenant("fabrikam", other, "")},
		{"user-assigned", tenant("contoso", home, id1) + tenant("fabrikam", other, strings.ToUpper(id1))},
	} {
		_, err := Parse([]byte("tenants:\n" + tc.file))
		if err == nil || !strings.Contains(err.Error(), `tenant "fabrikam": the same managed identity as tenant "contoso"`) {
			t.Errorf("%s: one identity for two tenantIds: err = %v, want it refused", tc.name, err)
		}
	}
	if _, err := Parse([]byte("tenants:\n" + tenant("contoso", home, id1) + tenant("fabrikam", other, id2))); err != nil {
		t.Errorf("two identities: %v", err)
	}
}
