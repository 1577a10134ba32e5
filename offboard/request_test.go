package offboard

import (
	"fmt"
	"strings"
	"testing"
	"unicode"
	"unicode/utf8"
)

func TestParseRequest(t *testing.T) {
	t.Parallel()
	const id = "1e5bc9d7e413ddd7902c2932e418702b84d0cc07"
	for _, tc := range []struct {
		name, body string
		wantErr    string // substring; "" means valid
		wantID     string // requestId kept in the answer
	}{
		{name: "by id", body: `{"requestId":"r1","machineId":"` + id + `"}`, wantID: "r1"},
		{name: "upper-case id", body: `{"requestId":"r1","machineId":"` + strings.ToUpper(id) + `"}`, wantID: "r1"},
		{name: "by name", body: `{"requestId":"r:1.x-y_z","computerDnsName":"laptop-123.contoso.local"}`, wantID: "r:1.x-y_z"},
		{name: "unknown fields ignored", body: `{"requestId":"r1","machineId":"` + id + `","extra":{"a":1}}`, wantID: "r1"},
		{name: "tenant matches", body: `{"requestId":"r1","machineId":"` + id + `","tenant":"contoso"}`, wantID: "r1"},
		{name: "dry run", body: `{"requestId":"r1","machineId":"` + id + `","dryRun":true}`, wantID: "r1"},
		{name: "empty tenant is none", body: `{"requestId":"r1","machineId":"` + id + `","tenant":""}`, wantID: "r1"},
		{name: "empty id beside a name is none", body: `{"requestId":"r1","machineId":"","computerDnsName":"a.b"}`, wantID: "r1"},
		{name: "not JSON", body: `{"requestId":`, wantErr: "not a JSON object"},
		{name: "JSON array", body: `[1]`, wantErr: "not a JSON object"},
		{name: "wrong type", body: `{"requestId":"r1","machineId":5}`, wantErr: "machineId must be", wantID: "r1"},
		{name: "wrong type, bad id", body: `{"requestId":"a b","machineId":5}`, wantErr: "machineId must be"},
		{name: "no request id", body: `{"machineId":"` + id + `"}`, wantErr: "requestId is missing"},
		{name: "bad request id", body: `{"requestId":"a b","machineId":"` + id + `"}`, wantErr: "requestId \"a b\" does not match"},
		{name: "long request id", body: `{"requestId":"` + strings.Repeat("a", 129) + `","machineId":"` + id + `"}`, wantErr: "does not match"},
		{name: "both", body: `{"requestId":"r1","machineId":"` + id + `","computerDnsName":"a.b"}`, wantErr: "not both", wantID: "r1"},
		{name: "neither", body: `{"requestId":"r1"}`, wantErr: "is required", wantID: "r1"},
		{name: "short id", body: `{"requestId":"r1","machineId":"abc"}`, wantErr: "not 40 hexadecimal", wantID: "r1"},
		{name: "path trick", body: `{"requestId":"r1","machineId":"../../../../api/machines/aaaaaaaaaaaaaaa"}`, wantErr: "not 40 hexadecimal", wantID: "r1"},
		{name: "name with slash", body: `{"requestId":"r1","computerDnsName":"a/../b"}`, wantErr: "not a DNS name", wantID: "r1"},
		{name: "name with quote", body: `{"requestId":"r1","computerDnsName":"a'b"}`, wantErr: "not a DNS name", wantID: "r1"},
		{name: "tenant mismatch", body: `{"requestId":"r1","machineId":"` + id + `","tenant":"fabrikam"}`, wantErr: "does not match the subject", wantID: "r1"},
		{name: "long comment", body: `{"requestId":"r1","machineId":"` + id + `","comment":"` + strings.Repeat("é", 1001) + `"}`, wantErr: "1001 characters", wantID: "r1"},
		{name: "control in comment", body: `{"requestId":"r1","machineId":"` + id + `","comment":"a\u0000b"}`, wantErr: "control", wantID: "r1"},
		{name: "Persian comment with a non-joiner", body: `{"requestId":"r1","machineId":"` + id + `","comment":"\u0645\u06cc\u200c\u062e\u0648\u0627\u0647\u0645"}`, wantID: "r1"},
		{name: "emoji sequence in requestedBy", body: `{"requestId":"r1","machineId":"` + id + `","requestedBy":"\ud83d\udc69\u200d\ud83d\udcbb ops"}`, wantID: "r1"},
		{name: "joiner between ASCII letters", body: `{"requestId":"r1","machineId":"` + id + `","source":"cmdb\u200dsync"}`, wantErr: "formatting characters", wantID: "r1"},
		{name: "joiner leading a comment", body: `{"requestId":"r1","machineId":"` + id + `","comment":"\u200c\u0645\u06cc"}`, wantErr: "formatting characters", wantID: "r1"},
		{name: "long source", body: `{"requestId":"r1","machineId":"` + id + `","source":"` + strings.Repeat("s", 257) + `"}`, wantErr: "source has 257 characters", wantID: "r1"},
		{name: "bidi override in requestedBy", body: `{"requestId":"r1","machineId":"` + id + `","requestedBy":"admin\u202egnp.exe"}`, wantErr: "formatting characters", wantID: "r1"},
		{name: "line separator in comment", body: `{"requestId":"r1","machineId":"` + id + `","comment":"retired\u2028approved by: ciso"}`, wantErr: "formatting characters", wantID: "r1"},
		{name: "attempt", body: `{"requestId":"r1","machineId":"` + id + `","attempt":2}`, wantID: "r1"},
		{name: "attempt zero", body: `{"requestId":"r1","machineId":"` + id + `","attempt":0}`, wantErr: "attempt must be at least 1", wantID: "r1"},
		{name: "attempt fraction", body: `{"requestId":"r1","machineId":"` + id + `","attempt":1.5}`, wantErr: "attempt must be a whole number", wantID: "r1"},
		{name: "attempt out of range", body: `{"requestId":"r1","machineId":"` + id + `","attempt":1e20}`, wantErr: "attempt 1e20 is out of range: it must be from 1 to 9223372036854775807", wantID: "r1"},
		{name: "attempt past the largest", body: `{"requestId":"r1","machineId":"` + id + `","attempt":9223372036854775808}`, wantErr: "attempt 9223372036854775808 is out of range", wantID: "r1"},
		{name: "attempt the largest", body: `{"requestId":"r1","machineId":"` + id + `","attempt":9223372036854775807}`, wantID: "r1"},
		{name: "attempt negative out of range", body: `{"requestId":"r1","machineId":"` + id + `","attempt":-1E+300}`, wantErr: "attempt -1E+300 is out of range", wantID: "r1"},
		{name: "attempt negative with an exponent", body: `{"requestId":"r1","machineId":"` + id + `","attempt":-1e3}`, wantErr: "attempt -1e3 is out of range: it must be from 1 to", wantID: "r1"},
		{name: "attempt zero with a fraction", body: `{"requestId":"r1","machineId":"` + id + `","attempt":0.0}`, wantErr: "attempt 0.0 is out of range", wantID: "r1"},
		{name: "attempt of a long fraction", body: `{"requestId":"r1","machineId":"` + id + `","attempt":1.` + strings.Repeat("0", 5000) + `1}`, wantErr: "attempt must be a whole number, not 1.000", wantID: "r1"},
		{name: "attempt of a huge exponent", body: `{"requestId":"r1","machineId":"` + id + `","attempt":1e99999999999999999999}`, wantErr: "is out of range", wantID: "r1"},
		{name: "attempt of a tiny exponent", body: `{"requestId":"r1","machineId":"` + id + `","attempt":1e-99999999999999999999}`, wantErr: "attempt must be a whole number, not 1e-99999999999999999999", wantID: "r1"},
		{name: "attempt fraction out of range", body: `{"requestId":"r1","machineId":"` + id + `","attempt":1e20.5}`, wantErr: "not a JSON object"},
		{name: "attempt fraction in an exponent", body: `{"requestId":"r1","machineId":"` + id + `","attempt":25e-1}`, wantErr: "attempt must be a whole number, not 25e-1", wantID: "r1"},
		{name: "attempt whole with an exponent", body: `{"requestId":"r1","machineId":"` + id + `","attempt":1e3}`, wantErr: "attempt 1e3 is a whole number written with a fraction or an exponent: write it in digits alone", wantID: "r1"},
		{name: "attempt whole with a fraction", body: `{"requestId":"r1","machineId":"` + id + `","attempt":2.0}`, wantErr: "attempt 2.0 is a whole number written with a fraction", wantID: "r1"},
		{name: "attempt whole with a negative exponent", body: `{"requestId":"r1","machineId":"` + id + `","attempt":200e-2}`, wantErr: "attempt 200e-2 is a whole number written with", wantID: "r1"},
		{name: "attempt as text", body: `{"requestId":"r1","machineId":"` + id + `","attempt":"2"}`, wantErr: "field attempt must be a whole number", wantID: "r1"},
		{name: "dry run as text", body: `{"requestId":"r1","machineId":"` + id + `","dryRun":"true"}`, wantErr: "field dryRun must be a boolean (true or false)", wantID: "r1"},
		{name: "comment as a number", body: `{"requestId":"r1","machineId":"` + id + `","comment":5}`, wantErr: "field comment must be a string", wantID: "r1"},
		{name: "not UTF-8", body: "{\"requestId\":\"r1\",\"comment\":\"\xff\"}", wantErr: "not UTF-8"},
		{name: "lone high surrogate in comment", body: `{"requestId":"r1","machineId":"` + id + `","comment":"CHG\ud800 approved"}`, wantErr: `not UTF-8 text: the escape \ud800 at byte`},
		{name: "lone low surrogate in requestedBy", body: `{"requestId":"r1","machineId":"` + id + `","requestedBy":"\uDC00"}`, wantErr: `not UTF-8 text: the escape \uDC00 at byte`},
		{name: "high surrogate before another escape", body: `{"requestId":"r1","machineId":"` + id + `","source":"\ud83d\u0041"}`, wantErr: `the escape \ud83d at byte`},
		{name: "lone surrogate in an unknown member", body: `{"requestId":"r1","machineId":"` + id + `","extra":["\udfff"]}`, wantErr: "half of a surrogate pair"},
		{name: "surrogate pair", body: `{"requestId":"r1","machineId":"` + id + `","comment":"retired \ud83d\ude00"}`, wantID: "r1"},
		{name: "escaped backslash before u", body: `{"requestId":"r1","machineId":"` + id + `","comment":"C:\\ud800"}`, wantID: "r1"},
		{name: "ends in a backslash", body: `{"requestId":"r1\`, wantErr: "not a JSON object"},
		{name: "ends in half an escape", body: `{"requestId":"r1","comment":"\ud8`, wantErr: "not a JSON object"},
		{name: "duplicate member", body: `{"requestId":"r1","dryRun":true,"dryRun":false,"machineId":"` + id + `"}`, wantErr: "appears twice", wantID: "r1"},
		{name: "member in other case", body: `{"requestId":"r1","dryRun":true,"DryRun":false,"machineId":"` + id + `"}`, wantErr: "case-sensitive", wantID: "r1"},
		{name: "id in other case", body: `{"requestId":"r1","MachineId":"` + id + `"}`, wantErr: "case-sensitive", wantID: "r1"},
		{name: "dry run in snake case", body: `{"requestId":"r1","machineId":"` + id + `","dry_run":true}`, wantErr: `member "dry_run": field names are written in camel case, without separators: write "dryRun"`, wantID: "r1"},
		{name: "dry run in kebab case", body: `{"requestId":"r1","machineId":"` + id + `","dry-run":true}`, wantErr: `write "dryRun"`, wantID: "r1"},
		{name: "dry run in upper snake case", body: `{"requestId":"r1","machineId":"` + id + `","DRY_RUN":true}`, wantErr: `write "dryRun"`, wantID: "r1"},
		{name: "dry run with a space", body: `{"requestId":"r1","machineId":"` + id + `","dry run":true}`, wantErr: `write "dryRun"`, wantID: "r1"},
		{name: "dry run beside its snake case", body: `{"requestId":"r1","machineId":"` + id + `","dryRun":false,"dry_run":true}`, wantErr: `write "dryRun"`, wantID: "r1"},
		{name: "name in snake case", body: `{"requestId":"r1","computer_dns_name":"pc-1.contoso.local"}`, wantErr: `write "computerDnsName"`, wantID: "r1"},
		{name: "request id in snake case", body: `{"request_id":"r1","machineId":"` + id + `"}`, wantErr: `write "requestId"`},
		{name: "dry run with is before it", body: `{"requestId":"r1","machineId":"` + id + `","isDryRun":true}`, wantErr: `member "isDryRun": a flag's name is written without "is" before it: write "dryRun"`, wantID: "r1"},
		{name: "dry run with is before it, in snake case", body: `{"requestId":"r1","machineId":"` + id + `","is_dry_run":true}`, wantErr: `without "is" before it: write "dryRun"`, wantID: "r1"},
		{name: "other fields with is before them", body: `{"requestId":"r1","machineId":"` + id + `","isAttempt":1,"isSource":"x","isDry":true}`, wantID: "r1"},
		{name: "dry run in an unknown member", body: `{"requestId":"r1","machineId":"` + id + `","options":{"dryRun":true}}`, wantErr: `member "options" holds a member "dryRun": dryRun is read at the request's top level alone`, wantID: "r1"},
		{name: "dry run deep in an array", body: `{"requestId":"r1","machineId":"` + id + `","meta":[1,{"a":{"Dry_Run":false}}]}`, wantErr: `member "meta" holds a member "Dry_Run"`, wantID: "r1"},
		{name: "dry run with a zero-width space", body: `{"requestId":"r1","machineId":"` + id + `","dry\u200bRun":true}`, wantErr: `member "dry\u200bRun" holds a character one does not see: write "dryRun"`, wantID: "r1"},
		{name: "dry run with a soft hyphen as it is", body: `{"requestId":"r1","machineId":"` + id + "\",\"dry\u00adRun\":true}", wantErr: `holds a character one does not see: write "dryRun"`, wantID: "r1"},
		{name: "dry run with a no-break space", body: `{"requestId":"r1","machineId":"` + id + "\",\"Dry\u00a0Run\":true}", wantErr: `member "Dry\u00a0Run": field names are written in camel case, without separators: write "dryRun"`, wantID: "r1"},
		{name: "dry run with a non-breaking hyphen", body: `{"requestId":"r1","machineId":"` + id + "\",\"dry\u2011run\":true}", wantErr: `member "dry\u2011run": field names are written in camel case, without separators: write "dryRun"`, wantID: "r1"},
		{name: "dry run with an en dash in an unknown member", body: `{"requestId":"r1","machineId":"` + id + "\",\"o\":{\"dry\u2013run\":1}}", wantErr: `member "o" holds a member "dry\u2013run"`, wantID: "r1"},
		{name: "dry run with a zero-width space in an unknown member", body: `{"requestId":"r1","machineId":"` + id + `","o":{"dry\u200bRun":true}}`, wantErr: `member "o" holds a member "dry\u200bRun"`, wantID: "r1"},
		{name: "dry run with a separator in each word in an unknown member", body: `{"requestId":"r1","machineId":"` + id + `","o":{"d-ry_r.un":true}}`, wantErr: `member "o" holds a member "d-ry_r.un"`, wantID: "r1"},
		{name: "dry run escaped in an unknown member", body: `{"requestId":"r1","machineId":"` + id + `","o":{"\u0064ryRun":true,"n":1e999}}`, wantErr: `member "o" holds a member "dryRun"`, wantID: "r1"},
		{name: "dry run at the top level beside an unknown member", body: `{"requestId":"r1","machineId":"` + id + `","dryRun":true,"options":{"dryness":1,"run":2}}`, wantID: "r1"},
		{name: "unknown member with separators", body: `{"requestId":"r1","machineId":"` + id + `","change_ticket":"CHG1","x-trace":"a"}`, wantID: "r1"},
		{name: "nested too deep", body: `{"requestId":"r1","machineId":"` + id + `","extra":` + strings.Repeat("[", 10001) + strings.Repeat("]", 10001) + `}`, wantErr: "nested more than 10000 levels deep"},
		{name: "oversize", body: `{"requestId":"r1","comment":"` + strings.Repeat("x", 70<<10) + `"}`, wantErr: "more than 65536"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r, err := ParseRequest([]byte(tc.body), "contoso")
			if tc.wantErr == "" {
				if err != nil {
					t.Fatalf("unexpected error: %v", err)
				}
				if r.MachineID != "" && r.MachineID != strings.ToLower(r.MachineID) {
					t.Errorf("machineId %q not lower-cased", r.MachineID)
				}
			} else if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("error %v, want one containing %q", err, tc.wantErr)
			}
			if r.RequestID != tc.wantID {
				t.Errorf("requestId kept = %q, want %q", r.RequestID, tc.wantID)
			}
			if err != nil && len(err.Error()) > 300 {
				t.Errorf("error message is %d bytes long: untrusted input must be cut short", len(err.Error()))
			}
		})
	}
}

// A refused request's answer echoes only the fields that passed their own
// check: a bad machineId, a 64 KiB requestedBy or a source with control
// characters never reach the result or the log.
func TestParseRequestKeepsOnlyCheckedFields(t *testing.T) {
	t.Parallel()
	long := strings.Repeat("x", 60<<10)
	body := `{"requestId":"r1","machineId":"../../api/x","requestedBy":"` + long + `","source":"a\u001b[31mb","comment":"ok"}`
	r, err := ParseRequest([]byte(body), "contoso")
	if err == nil {
		t.Fatal("a request with a bad machineId was accepted")
	}
	want := Request{RequestID: "r1", Comment: "ok"}
	if r != want {
		t.Fatalf("kept %+v, want only the checked fields %+v", r, want)
	}
	if len(err.Error()) > 300 || strings.Contains(err.Error(), "\x1b") {
		t.Fatalf("error echoes untrusted input: %q", err.Error())
	}
}

// A comment of white space alone counts as absent, like "": the API
// refuses it as a missing comment, so the tenant's template gives it.
func TestParseRequestBlankCommentIsAbsent(t *testing.T) {
	t.Parallel()
	const id = "1e5bc9d7e413ddd7902c2932e418702b84d0cc07"
	for _, comment := range []string{" ", "   ", "\u00a0", " \u3000 \u2003"} {
		r, err := ParseRequest([]byte(`{"requestId":"r1","machineId":"`+id+`","comment":"`+comment+`"}`), "contoso")
		if err != nil {
			t.Fatalf("comment %q: %v", comment, err)
		}
		if r.Comment != "" {
			t.Errorf("comment %q kept as %q, want it absent", comment, r.Comment)
		}
	}
	r, err := ParseRequest([]byte(`{"requestId":"r1","machineId":"`+id+`","comment":" kept as sent "}`), "contoso")
	if err != nil || r.Comment != " kept as sent " {
		t.Errorf("a comment with text: %q, %v; want it as sent", r.Comment, err)
	}
}

func TestTruncateMessage(t *testing.T) {
	t.Parallel()
	s := TruncateMessage(strings.Repeat("é", 5000))
	if n := utf8.RuneCountInString(s); n != MaxMessageLength || !utf8.ValidString(s) {
		t.Fatalf("cut to %d characters (valid UTF-8: %v), want %d", n, utf8.ValidString(s), MaxMessageLength)
	}
	if Failed("x", "short").Message != "short" {
		t.Fatal("a short message was changed")
	}
}

// A member refused for repeating, or for differing from a field name only
// in case, is a refused field: its value is not echoed, whichever copy a
// case-insensitive reader would keep.
func TestParseRequestDoesNotEchoRefusedMembers(t *testing.T) {
	t.Parallel()
	a, b := strings.Repeat("a", 40), strings.Repeat("b", 40)
	for _, body := range []string{
		`{"requestId":"r1","machineId":"` + a + `","MachineId":"` + b + `"}`,
		`{"requestId":"r1","machineId":"` + a + `","machineId":"` + b + `"}`,
		`{"requestId":"r1","machineId":"` + a + `","requestedBy":"x","RequestedBy":"mallory"}`,
	} {
		r, err := ParseRequest([]byte(body), "contoso")
		if err == nil {
			t.Fatalf("%s accepted", body)
		}
		if r.MachineID == b || r.RequestedBy != "" || r.RequestID != "r1" {
			t.Errorf("%s: kept %+v, want requestId r1 and nothing of a refused member", body, r)
		}
	}
}

// The quick member scan and encoding/json's tokenizer agree on every
// member list, and the scan declines what it does not plainly read.
func TestMemberNamesAgreeWithTheTokenizer(t *testing.T) {
	t.Parallel()
	for _, body := range []string{
		`{}`, ` { "a" : 1 , "b" : [1, {"c": "}"}], "d": {"e": [ ]} } `,
		`{"requestId":"r","\u0072equestId":"s"}`, `{"a":"x\"y","b":null,"c":true,"d":-1.5e3}`,
		`{"requeſtId":"r"}`,
	} {
		keys, ok := memberNames([]byte(body))
		if !ok {
			t.Errorf("%s: the scan declined a well-formed object", body)
			continue
		}
		fast, ferr := checkMembers([]byte(body))
		slow, serr := checkMembersSlow([]byte(body))
		if fmt.Sprint(fast) != fmt.Sprint(slow) || fmt.Sprint(ferr) != fmt.Sprint(serr) {
			t.Errorf("%s: scan %v %v (keys %q), tokenizer %v %v", body, fast, ferr, keys, slow, serr)
		}
	}
	for _, body := range []string{`[]`, `{"a":1,}`, `{"a" 1}`, `{"a":1}x`, "{\"a\x01\":1}", `{"a":"unterminated}`, `{"a":{"b":1}`, `{,}`} {
		if _, ok := memberNames([]byte(body)); ok {
			t.Errorf("%s: the scan read malformed input", body)
		}
	}
}

// Every request's three texts are checked for hidden characters: the
// check reads them in place, a comment of 1000 characters included, as
// it did before joiners in words were taken (it copied each text into a
// slice of runes, 4 KiB for such a comment, per request).
func TestHiddenAllocatesNothing(t *testing.T) {
	comment := strings.Repeat("Retired in CMDB (CHG0012345) \u0645\u06cc\u200c\u062e ", 29)
	if Hidden(comment) {
		t.Fatal("a comment with a non-joiner in a Persian word is refused")
	}
	if n := testing.AllocsPerRun(100, func() { _ = Hidden(comment) }); n != 0 {
		t.Errorf("Hidden allocates %v times for a comment of %d characters", n, utf8.RuneCountInString(comment))
	}
}

// A publisher's own metadata may fill a request's 64 KiB, and words like
// "dry" in it (a CMDB's "dryRunSupported", a note) have every member name
// looked at for a nested dryRun: that look reads the names off the bytes,
// as it does when no value says "dry". It decoded every value of the
// request into maps and slices, about six times the work of reading it.
func TestNestedDryRunLookCostsNothingMore(t *testing.T) {
	id := "1e5bc9d7e413ddd7902c2932e418702b84d0cc07"
	meta := strings.Repeat(`{"k":[1,2,3,"dryer"],"n":{"m":"dry"}},`, 1700)
	body := func(word string) []byte {
		return []byte(`{"requestId":"r1","machineId":"` + id + `","meta":[` + strings.ReplaceAll(meta, "dry", word) + `1]}`)
	}
	dry, wet := body("dry"), body("wet")
	if len(dry) < 60<<10 || len(dry) > MaxRequestSize {
		t.Fatalf("request of %d bytes, want about 64 KiB", len(dry))
	}
	for _, b := range [][]byte{dry, wet} {
		if _, err := ParseRequest(b, "contoso"); err != nil {
			t.Fatal(err)
		}
	}
	withDry := testing.AllocsPerRun(5, func() { _, _ = ParseRequest(dry, "contoso") })
	without := testing.AllocsPerRun(5, func() { _, _ = ParseRequest(wet, "contoso") })
	if withDry > without+10 {
		t.Errorf("ParseRequest allocates %v times for a 64 KiB request whose metadata says \"dry\", %v without", withDry, without)
	}
}

// A body that is no JSON object says what it is instead: an empty body, a
// byte order mark (which .NET and PowerShell write before UTF-8 unless
// told not to), UTF-16 or UTF-32, or another kind of JSON value. "not a JSON
// object of the documented form" alone sends the publisher looking for a
// fault in a body that reads right.
func TestParseRequestSaysWhatANonObjectIs(t *testing.T) {
	t.Parallel()
	const ok = `{"requestId":"r1","machineId":"1e5bc9d7e413ddd7902c2932e418702b84d0cc07"}`
	const form = "request is not a JSON object of the documented form: "
	for body, want := range map[string]string{
		"":                              form + "it is empty",
		" \r\n ":                        form + "it is empty",
		"\xef\xbb\xbf" + ok:             form + "it starts with a byte order mark (U+FEFF): send the JSON without one",
		"\xff\xfe{\x00\"\x00":           "request is UTF-16, not UTF-8",
		"\xfe\xff\x00{\x00\"":           "request is UTF-16, not UTF-8",
		"{\x00\"\x00r\x00":              "request is UTF-16, not UTF-8",
		"\x00{\x00\"\x00r":              "request is UTF-16, not UTF-8",
		"\r\x00\n\x00{\x00":             "request is UTF-16, not UTF-8",
		"\xff\xfe\x00\x00{\x00\x00\x00": "request is UTF-32, not UTF-8",
		"\x00\x00\xfe\xff\x00\x00\x00{": "request is UTF-32, not UTF-8",
		"{\x00\x00\x00\"\x00\x00\x00":   "request is UTF-32, not UTF-8",
		"\x00\x00\x00{\x00\x00\x00\"":   "request is UTF-32, not UTF-8",
		"null":                          form + "it is null",
		"[" + ok + "]":                  form + "it is a JSON array",
		`"r1"`:                          form + "it is a JSON string",
		" 42 ":                          form + "it is a JSON number",
		"true":                          form + "it is a JSON boolean",
		"requestId=r1":                  form + "syntax error at byte 1",
		"{\"requestId\":\"r1\"\x00":     form + "syntax error at byte",
	} {
		_, err := ParseRequest([]byte(body), "contoso")
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%+q: error %v, want one containing %q", body, err, want)
		}
	}
}

// The characters Unicode says to ignore when not rendered, beyond the
// format ones (a Hangul filler, a combining grapheme joiner, a variation
// selector on its own), show as nothing, as a zero-width space does:
// "admin\u3164" reads as "admin" in an audit record. They are refused in
// the three texts as a zero-width space is, the error naming the field
// and the character's code point, never the value; a variation selector
// that gives an emoji or an ideograph its form stays, as a joiner inside
// an emoji sequence does.
func TestParseRequestRefusesCharactersOneDoesNotSee(t *testing.T) {
	t.Parallel()
	const id = "1e5bc9d7e413ddd7902c2932e418702b84d0cc07"
	for _, tc := range []struct {
		field, value, want string // want: "" accepted, else the code point named
	}{
		{"requestedBy", `admin\u3164`, "U+3164"},
		{"requestedBy", `\u115fadmin`, "U+115F"},
		{"source", `cmdb\u1160sync`, "U+1160"},
		{"source", `cmdb\uffa0`, "U+FFA0"},
		{"comment", `\u3164`, "U+3164"},
		{"comment", `Retired\u034f`, "U+034F"},
		{"comment", `\ufe0f`, "U+FE0F"},
		{"comment", `Retired \ufe0f`, "U+FE0F"},
		{"requestedBy", `admin\ufe0f`, "U+FE0F"},
		{"requestedBy", `admin\ufe00`, "U+FE00"},
		{"source", `cmdb\udb40\udd00`, "U+E0100"},
		{"comment", `Retired \u2764\ufe0f\ufe0f`, "U+FE0F"},
		{"comment", `Retired \u200b`, "U+200B"},
		{"requestedBy", `admin\u202egnp.exe`, "U+202E"},
		{"comment", `Retired \u2764\ufe0f`, ""},
		{"comment", `Retired \ud83c\udff3\ufe0f\u200d\ud83c\udf08`, ""},
		{"comment", `step 1\ufe0f\u20e3 done`, ""},
		{"source", `\u845b\udb40\udd00`, ""},
		{"requestedBy", `\u1100\u1161`, ""},
	} {
		body := `{"requestId":"r1","machineId":"` + id + `","` + tc.field + `":"` + tc.value + `"}`
		r, err := ParseRequest([]byte(body), "contoso")
		switch {
		case tc.want == "" && err != nil:
			t.Errorf("%s %s refused: %v", tc.field, tc.value, err)
		case tc.want == "":
		case err == nil:
			t.Errorf("%s %s accepted as %+v", tc.field, tc.value, r)
		case !strings.Contains(err.Error(), tc.field) || !strings.Contains(err.Error(), tc.want):
			t.Errorf("%s %s: error %q does not name the field and %s", tc.field, tc.value, err, tc.want)
		case strings.Contains(err.Error(), "admin") || strings.Contains(err.Error(), "cmdb") || strings.Contains(err.Error(), "Retired"):
			t.Errorf("%s %s: error %q echoes the value", tc.field, tc.value, err)
		case r.Comment != "" || r.RequestedBy != "" || r.Source != "":
			t.Errorf("%s %s: refused text kept: %+v", tc.field, tc.value, r)
		}
	}
}

// TestUnseenASCIIAsTheTables: Unseen's shortcut for ASCII answers as the
// Unicode tables do.
func TestUnseenASCIIAsTheTables(t *testing.T) {
	for r := rune(0); r < utf8.RuneSelf; r++ {
		want := unicode.IsControl(r) || unicode.In(r, unicode.Cf, unicode.Variation_Selector, unicode.Other_Default_Ignorable_Code_Point)
		if got := Unseen(r); got != want {
			t.Errorf("Unseen(%U) = %v, want %v", r, got, want)
		}
	}
}
