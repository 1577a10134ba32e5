package mde

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
)

// A device record whose rbacGroupId is a string holding no number is not
// read, and the error does not quote the string: it is whatever the
// answer wrote there, a credential a gateway or a cache that mixes
// answers up echoed (another call's, which the client cannot take out),
// or megabytes of text. encoding/json's error for it quotes it whole.
func TestDeviceRecordErrorQuotesNoField(t *testing.T) {
	t.Parallel()
	const other = "eyJ0eXAiOiJKV1QiLCJhbGciOiJSUzI1NiJ9.eyJ0aWQiOiJvdGhlciJ9.SECRETotherTenantSignature0123456789"
	for _, value := range []string{"Bearer " + other, strings.Repeat("x", 1<<20)} {
		rec := `{"id":"` + testMachineID + `","computerDnsName":"pc.contoso.local","rbacGroupId":"` + value + `"}`
		list := `{"value":[` + rec + `]}`
		check := func(what string, err error) {
			t.Helper()
			if err == nil {
				t.Errorf("%s: no error, want one", what)
				return
			}
			if msg := err.Error(); strings.Contains(msg, "SECRET") || strings.Contains(msg, "xxxx") || len(msg) > 200 {
				t.Errorf("%s: error %.300q quotes the answer", what, msg)
			}
		}
		_, err := ParseMachine([]byte(rec))
		check("ParseMachine", err)
		_, _, err = ParseMachineList([]byte(list))
		check("ParseMachineList", err)
		v := setupAPI(t, answerWith(200, nil, list), nil).client.FindMachinesByName(context.Background(), "pc.contoso.local")
		if v.Named == nil {
			t.Fatalf("FindMachinesByName = %v %s, want an answer read", v.Class, v.Error())
		}
		check("FindMachinesByName", v.Named.Err)
	}
	// A number, or a string holding one, is still read.
	for value, want := range map[string]json.Number{`42`: "42", `"42"`: "42", `null`: ""} {
		if m, err := ParseMachine([]byte(`{"id":"a","rbacGroupId":` + value + `}`)); err != nil || m.RbacGroupID != want {
			t.Errorf("ParseMachine(rbacGroupId %s) = %q, %v; want %q", value, m.RbacGroupID, err, want)
		}
	}
}
