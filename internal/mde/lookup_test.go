package mde

import (
	"context"
	"fmt"
	"strings"
	"testing"
)

// A name shared by more records than MaxBody holds is read whole, a
// record at a time: the first MaxNameMatches kept, all counted.
func TestFindMachinesByNameOfThousandsOfRecords(t *testing.T) {
	t.Parallel()
	var b strings.Builder
	b.WriteString(`{"@odata.context":"x","value":[`)
	for i := range 5000 {
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, `{"id":"%040x","computerDnsName":"VDI.contoso.local","healthStatus":"Inactive","machineTags":[%q]}`, i, strings.Repeat("t", 1000))
	}
	b.WriteString(`,{"id":"other","computerDnsName":"vdi-2.contoso.local"}]}`)
	if b.Len() <= MaxBody {
		t.Fatalf("the answer takes %d bytes, no more than MaxBody", b.Len())
	}
	f := setupAPI(t, answerWith(200, nil, b.String()), nil)
	v := f.client.FindMachinesByName(context.Background(), "vdi.contoso.local.")
	if v.Class != Success || v.Named == nil || v.Named.Err != nil {
		t.Fatalf("FindMachinesByName = %v %+v", v.Class, v.Error())
	}
	if n := v.Named; n.Count != 5000 || len(n.Machines) != MaxNameMatches || n.More || n.Machines[0].ID != fmt.Sprintf("%040x", 0) {
		t.Errorf("found %d, kept %d, more %v", n.Count, len(n.Machines), n.More)
	}
}

// The lookup reads an answer as ParseMachineList does: what is not a
// list of devices is an error, the part of a list a nextLink follows is
// said to be one, and the bearer token a record quotes is taken out.
func TestFindMachinesByNameAnswers(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name, body string
		count      int
		more       bool
		err        string
	}{
		{"empty", `{"value":[]}`, 0, false, ""},
		{"other names left out", `{"value":[{"id":"a","computerDnsName":"pc.contoso.local"},{"id":"b","computerDnsName":"pc2.contoso.local"}]}`, 1, false, ""},
		{"part of the list", `{"value":[{"id":"a","computerDnsName":"pc.contoso.local"}],"@odata.nextLink":"https://x/api/machines?$skip=1"}`, 1, true, ""},
		{"nextLink before value", `{"@odata.nextLink":"n","value":[]}`, 0, true, ""},
		{"no value", `{}`, 0, false, `read machines: the answer has no "value" list`},
		{"null value", `{"value":null}`, 0, false, `no "value" list`},
		{"cut short", `{"value":[{"id":"a","computerDnsName":"pc.contoso.local"}`, 0, false, "read machines: unexpected EOF"},
		{"a record that is none", `{"value":[1]}`, 0, false, "read machines: json: cannot unmarshal number"},
		{"not an object", `[]`, 0, false, "read machines"},
		{"trailing text", `{"value":[]} x`, 0, false, "read machines"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			v := setupAPI(t, answerWith(200, nil, tc.body), nil).client.FindMachinesByName(context.Background(), "pc.contoso.local")
			if v.Class != Success || v.Named == nil {
				t.Fatalf("FindMachinesByName = %v %s", v.Class, v.Error())
			}
			n := v.Named
			if tc.err != "" {
				if n.Err == nil || !strings.Contains(n.Err.Error(), tc.err) {
					t.Errorf("error %v, want %q", n.Err, tc.err)
				}
				return
			}
			if n.Err != nil || n.Count != tc.count || len(n.Machines) != tc.count || n.More != tc.more {
				t.Errorf("found %+v, want %d more=%v", n, tc.count, tc.more)
			}
		})
	}
	body := `{"value":[{"id":"a","computerDnsName":"pc.contoso.local","healthStatus":"Bearer ` + strings.ReplaceAll(testToken, ".", `\u002e`) + `"}]}`
	v := setupAPI(t, answerWith(200, nil, body), nil).client.FindMachinesByName(context.Background(), "pc.contoso.local")
	if v.Named == nil || len(v.Named.Machines) != 1 || strings.Contains(v.Named.Machines[0].HealthStatus, testToken) {
		t.Errorf("a record quoting the token: %+v", v.Named)
	}
}

// An answer that is a JSON text but not an object is refused without
// quoting it: a gateway's answer may be the bearer token it was sent, and
// a string may be megabytes long.
func TestFindMachinesByNameQuotesNoAnswer(t *testing.T) {
	t.Parallel()
	for _, body := range []string{
		`"Bearer ` + testToken + `"`,
		`"Bearer ` + strings.ReplaceAll(testToken, ".", `\u002e`) + `"`,
		`"` + strings.Repeat("x", 1<<20) + `"`,
	} {
		v := setupAPI(t, answerWith(200, nil, body), nil).client.FindMachinesByName(context.Background(), "pc.contoso.local")
		if v.Class != Success || v.Named == nil || v.Named.Err == nil {
			t.Fatalf("FindMachinesByName = %v %s, want an answer that is no list", v.Class, v.Error())
		}
		if msg := v.Named.Err.Error(); strings.Contains(msg, testToken) || strings.Contains(msg, "Bearer") || len(msg) > 200 {
			t.Errorf("error %.300q quotes the answer", msg)
		}
	}
}

// A nextLink that names a page says that more of the list follows,
// whatever other nextLink members the answer holds: a null or empty one
// after it does not make the part a whole list. Decoded whole, a null
// left the link read before.
func TestFindMachinesByNameNextLinkStays(t *testing.T) {
	t.Parallel()
	rec := `{"id":"a","computerDnsName":"pc.contoso.local"}`
	for _, body := range []string{
		`{"value":[` + rec + `],"@odata.nextLink":"https://x/api/machines?$skip=1","@odata.nextLink":null}`,
		`{"@odata.nextLink":"https://x/api/machines?$skip=1","value":[` + rec + `],"@odata.nextLink":""}`,
		`{"value":[` + rec + `],"@odata.nextLink":"https://x/api/machines?$skip=1","@ODATA.NEXTLINK":null}`,
	} {
		v := setupAPI(t, answerWith(200, nil, body), nil).client.FindMachinesByName(context.Background(), "pc.contoso.local")
		if v.Named == nil || v.Named.Err != nil || !v.Named.More {
			t.Errorf("%s: found %+v, want part of the list", body, v.Named)
		}
	}
}

// Names are the same in another case of ASCII letters alone, as DNS
// compares them: a record whose name has a letter that only Unicode
// folds to the requested one (ſ to s, the Kelvin sign to k) names
// another device, and is not taken for the name.
func TestFindMachinesByNameFoldsASCIIOnly(t *testing.T) {
	t.Parallel()
	body := `{"value":[{"id":"a","computerDnsName":"de\u017fktop.contoso.local"},{"id":"b","computerDnsName":"\u212aiosk.contoso.local"},{"id":"c","computerDnsName":"DESKTOP.Contoso.Local."}]}`
	for name, want := range map[string]int{"desktop.contoso.local": 1, "kiosk.contoso.local": 0} {
		v := setupAPI(t, answerWith(200, nil, body), nil).client.FindMachinesByName(context.Background(), name)
		if v.Named == nil || v.Named.Err != nil || v.Named.Count != want {
			t.Errorf("%s: found %+v, want %d", name, v.Named, want)
		}
	}
	if SameName("\u212aiosk", "kiosk") || !SameName("KIOSK.", "kiosk") {
		t.Error("SameName folds other than ASCII letters")
	}
}
