package offboard

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"unicode"
	"unicode/utf8"
)

// fuzzSeeds are request bodies of every kind the parser meets: valid ones
// and the ways publishers and attackers get them wrong.
func fuzzSeeds() []string {
	const id = "1e5bc9d7e413ddd7902c2932e418702b84d0cc07"
	return []string{
		`{"requestId":"r1","machineId":"` + id + `"}`,
		`{"requestId":"r1","machineId":"` + strings.ToUpper(id) + `","tenant":"contoso","dryRun":true,"attempt":2}`,
		`{"requestId":"r1","computerDnsName":"laptop-123.contoso.local.","comment":"Retired","requestedBy":"cmdb","source":"servicenow:CHG1"}`,
		`{"requestId":"r1","machineId":"` + id + `","MachineId":"` + id + `"}`,
		`{"requestId":"r1","machineId":"` + id + `","machineId":"` + id + `"}`,
		`{"requestId":"r1","machineId":"` + id + `","requeſtId":"r2"}`,
		`{"requestId":"r1","machineId":"` + id + `","attempt":1e3}`,
		`{"requestId":"r1","machineId":"` + id + `","attempt":99999999999999999999999}`,
		`{"requestId":"r1","machineId":"` + id + `","attempt":-0.5}`,
		`{"requestId":"r1","machineId":"` + id + `","attempt":null,"dryRun":null}`,
		`{"requestId":"r1","machineId":"` + id + `","extra":{"a":[1,{"b":"}"}]}}`,
		`{"requestId":"r1","machineId":"1e5bc9d7e413ddd7902c2932e418702b84d0cc0 "}`,
		`{"requestId":"r1","machineId":"١e5bc9d7e413ddd7902c2932e418702b84d0cc0"}`,
		`{"requestId":"r1","computerDnsName":"bücher.example"}`,
		`{"requestId":"r1","computerDnsName":"xn--bcher-kva.example"}`,
		`{"requestId":"r1","computerDnsName":"` + strings.Repeat("a", 64) + `.example"}`,
		`{"requestId":"r1","machineId":"` + id + `","comment":"a\u001b[31mb\r\nfake log line"}`,
		`{"requestId":"r1","machineId":"` + id + `","source":"\u202e"}`,
		`{"requestId":"r1","machineId":"` + id + `","comment":"\ud800"}`,
		`{"requestId":"r1","machineId":"` + id + `","tenant":"Contoso"}`,
		"{\"requestId\":\"r1\",\"comment\":\"\x00\"}",
		"\xef\xbb\xbf{\"requestId\":\"r1\"}",
		"\xff\xfe{\x00\"\x00",
		"{\"requestId\":\"r1\xff\"}",
		``, `null`, `[]`, `[{"requestId":"r1"}]`, `"r1"`, `1`, `true`, `{}`, `{"requestId":"r1",}`,
		`{"requestId":` + strings.Repeat("[", 100) + strings.Repeat("]", 100) + `}`,
		`{"requestId":"r1"}{"requestId":"r2"}`,
	}
}

// FuzzParseRequest checks what holds for any body: ParseRequest neither
// panics nor echoes refused input; an error is one short line free of
// hidden characters; what it keeps passed its own check; and what it
// accepts reads the same to a case-sensitive reader.
func FuzzParseRequest(f *testing.F) {
	for _, s := range fuzzSeeds() {
		f.Add([]byte(s), "contoso")
	}
	f.Add([]byte(`{"requestId":"r1","machineId":"`+strings.Repeat("a", 40)+`","tenant":"fabrikam"}`), "fabrikam")
	f.Fuzz(func(t *testing.T, data []byte, tenant string) {
		if !TenantName.MatchString(tenant) {
			return // the worker parses only on a configured tenant's subject
		}
		r, err := ParseRequest(data, tenant)
		checkKept(t, r, tenant)
		if err != nil {
			checkMessage(t, err.Error())
			return
		}
		checkAccepted(t, data, r, tenant)
		if keys, ok := memberNames(data); ok {
			fast, ferr := checkMembers(data)
			slow, serr := checkMembersSlow(data)
			if fmt.Sprint(fast) != fmt.Sprint(slow) || fmt.Sprint(ferr) != fmt.Sprint(serr) {
				t.Errorf("scan %v %v (keys %q), tokenizer %v %v", fast, ferr, keys, slow, serr)
			}
		}
	})
}

// checkKept: every field kept, on success or failure, passes its own check.
func checkKept(t *testing.T, r Request, tenant string) {
	t.Helper()
	if r.RequestID != "" && !ValidRequestID(r.RequestID) {
		t.Errorf("kept requestId %q", r.RequestID)
	}
	if r.MachineID != "" && (!ValidMachineID(r.MachineID) || r.MachineID != strings.ToLower(r.MachineID)) {
		t.Errorf("kept machineId %q", r.MachineID)
	}
	if r.ComputerDNSName != "" && checkDNSName(r.ComputerDNSName) != nil {
		t.Errorf("kept computerDnsName %q", r.ComputerDNSName)
	}
	if r.Tenant != "" && r.Tenant != tenant {
		t.Errorf("kept tenant %q on %q's subject", r.Tenant, tenant)
	}
	for field, v := range map[string]string{"comment": r.Comment, "requestedBy": r.RequestedBy, "source": r.Source} {
		if !utf8.ValidString(v) || checkText(field, v, MaxCommentLength) != nil {
			t.Errorf("kept %s %q", field, v)
		}
	}
	if r.Attempt < 0 {
		t.Errorf("kept attempt %d", r.Attempt)
	}
}

// checkMessage: an error is a short line of text that can forge no log
// line and no terminal output.
func checkMessage(t *testing.T, msg string) {
	t.Helper()
	if len(msg) > 300 {
		t.Errorf("error of %d bytes: %.300q", len(msg), msg)
	}
	if !utf8.ValidString(msg) || Hidden(msg) || strings.ContainsAny(msg, "\u2028\u2029\ufffd") {
		t.Errorf("error holds raw input: %+q", msg)
	}
	for _, r := range msg {
		if !unicode.IsPrint(r) && r != ' ' {
			t.Errorf("error holds the unprintable %U: %+q", r, msg)
			break
		}
	}
}

// checkAccepted: an accepted request names one device, and a case-sensitive
// reader that keeps the last of repeated members reads the same fields.
func checkAccepted(t *testing.T, data []byte, r Request, tenant string) {
	t.Helper()
	if (r.MachineID == "") == (r.ComputerDNSName == "") || r.RequestID == "" {
		t.Errorf("accepted %+v: want a request id and one device", r)
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	var m map[string]any
	if err := dec.Decode(&m); err != nil || dec.More() {
		t.Fatalf("accepted what is no single JSON object (%v): %q", err, data)
	}
	str := func(k string) string { s, _ := m[k].(string); return s }
	want := Request{
		RequestID: str("requestId"), MachineID: strings.ToLower(str("machineId")),
		ComputerDNSName: str("computerDnsName"), Comment: str("comment"), Tenant: str("tenant"),
		RequestedBy: str("requestedBy"), Source: str("source"),
	}
	if strings.TrimSpace(want.Comment) == "" {
		want.Comment = ""
	}
	want.DryRun, _ = m["dryRun"].(bool)
	if n, ok := m["attempt"].(json.Number); ok {
		a, err := n.Int64()
		if err != nil || a < 1 || n.String() != fmt.Sprint(a) {
			t.Errorf("accepted attempt %s", n)
		}
		want.Attempt = int(a)
	}
	if r != want {
		t.Errorf("read %+v, a case-sensitive reader reads %+v (tenant %s)", r, want, tenant)
	}
}
