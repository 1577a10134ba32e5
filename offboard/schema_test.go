package offboard_test

import (
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/santhosh-tekuri/jsonschema/v6"

	"github.com/contoso-secops/mde-offboard/internal/mde"
	"github.com/contoso-secops/mde-offboard/internal/mde/mdesim"
	"github.com/contoso-secops/mde-offboard/offboard"
)

// The JSON Schemas in deploy/schema are the contract for publishers and
// readers in other languages. These tests keep them in step with the Go
// types and with ParseRequest, the worker's own check.

const schemaDir = "../deploy/schema"

func compileSchema(t *testing.T, file string) *jsonschema.Schema {
	t.Helper()
	c := jsonschema.NewCompiler()
	c.AssertFormat() // date-time is checked, not only annotated
	sch, err := c.Compile(filepath.Join(schemaDir, file))
	if err != nil {
		t.Fatalf("%s: %v", file, err)
	}
	return sch
}

// validate reports whether body is valid against sch. A body that is not
// JSON is valid against no schema.
func validate(sch *jsonschema.Schema, body []byte) error {
	inst, err := jsonschema.UnmarshalJSON(strings.NewReader(string(body)))
	if err != nil {
		return err
	}
	return sch.Validate(inst)
}

const (
	deviceID = "1e5bc9d7e413ddd7902c2932e418702b84d0cc07"
	// byID starts a valid request; cases append members to it.
	byID = `{"requestId":"r1","machineId":"` + deviceID + `"`
)

type requestCase struct {
	name  string
	body  string
	valid bool // ParseRequest accepts it
	// parserOnly, when set, says why a schema cannot express the check
	// that refuses the request: the schema lets it through and only the
	// worker refuses it.
	parserOnly string
	// listed is what the schema's $comment, which tells publishers the
	// checks the schema leaves to the worker, says of a parserOnly case.
	listed string
	// instance, when set, is the request as a JSON reader without
	// encoding/json's limits decodes it, for the schema: body is what
	// ParseRequest reads.
	instance func() any
}

// requestCases are published on the subject of tenant "contoso".
func requestCases() []requestCase {
	long := func(s string, n int) string { return strings.Repeat(s, n) }
	return []requestCase{
		// Valid requests.
		{name: "by id", body: byID + `}`, valid: true},
		{name: "by upper-case id", body: `{"requestId":"r1","machineId":"` + strings.ToUpper(deviceID) + `"}`, valid: true},
		{name: "by name", body: `{"requestId":"r:1.x-y_z","computerDnsName":"laptop-123.contoso.local"}`, valid: true},
		{name: "name with underscore and final dot", body: `{"requestId":"r1","computerDnsName":"_srv.pc-1.contoso.local."}`, valid: true},
		{name: "every field", body: byID + `,"comment":"Retired in CMDB (CHG0012345)","tenant":"contoso","requestedBy":"cmdb-sync",` +
			`"source":"servicenow:CHG0012345","dryRun":true,"attempt":3,"notSeenSince":"2026-08-01T09:12:00.1234567Z"}`, valid: true},
		{name: "unknown members ignored", body: byID + `,"extra":{"a":[1,null]},"change_ticket":"x","x-trace-id":"y","requestIdx":5}`, valid: true},
		{name: "request id of 128 characters", body: `{"requestId":"` + long("a", 128) + `","machineId":"` + deviceID + `"}`, valid: true},
		{name: "comment of 1000 characters", body: byID + `,"comment":"` + long("é", 1000) + `"}`, valid: true},
		{name: "requestedBy of 256 characters", body: byID + `,"requestedBy":"` + long("ü", 256) + `"}`, valid: true},
		{name: "letters of any script", body: byID + `,"comment":"Gerät außer Dienst, 设备退役 ✓"}`, valid: true},
		{name: "Persian word with a non-joiner", body: byID + `,"comment":"\u0645\u06cc\u200c\u062e\u0648\u0627\u0647\u0645"}`, valid: true},
		{name: "emoji sequence", body: byID + `,"requestedBy":"\ud83d\udc69\u200d\ud83d\udcbb ops"}`, valid: true},
		{name: "joiners between letters, twice", body: byID + `,"source":"\u0645\u200c\u06cc\u200d\u062e"}`, valid: true},
		{name: "emoji with its variation selector", body: byID + `,"comment":"Retired \u2764\ufe0f"}`, valid: true},
		{name: "emoji sequence with a variation selector", body: byID + `,"comment":"\ud83c\udff3\ufe0f\u200d\ud83c\udf08"}`, valid: true},
		{name: "keycap", body: byID + `,"comment":"step 1\ufe0f\u20e3 done"}`, valid: true},
		{name: "keycap joined", body: byID + `,"comment":"1\ufe0f\u20e3\u200d\ud83d\udd25"}`, valid: true},
		{name: "keycap with a variation selector after it", body: byID + `,"comment":"1\ufe0f\u20e3\ufe0f"}`, valid: true},
		{name: "keycap with an ideographic variation selector after it", body: byID + `,"source":"#\ufe0f\u20e3\udb40\udd00"}`, valid: true},
		{name: "ideograph with its variation selector", body: byID + `,"source":"\u845b\udb40\udd00"}`, valid: true},
		{name: "Hangul conjoining letters", body: byID + `,"requestedBy":"\u1100\u1161"}`, valid: true},
		{name: "empty machineId counts as absent", body: `{"requestId":"r1","machineId":"","computerDnsName":"pc-1.contoso.local"}`, valid: true},
		{name: "comment of white space alone counts as absent", body: byID + `,"comment":" \u00a0\u3000 "}`, valid: true},
		{name: "null counts as absent", body: byID + `,"computerDnsName":null,"comment":null,"tenant":null,"dryRun":null,"attempt":null}`, valid: true},
		{name: "largest attempt", body: byID + `,"attempt":9223372036854775807}`, valid: true},
		{name: "notSeenSince with an offset", body: byID + `,"notSeenSince":"2026-08-01T11:12:00+02:00"}`, valid: true},
		{name: "notSeenSince in lower case, a long fraction", body: byID + `,"notSeenSince":"2026-08-01t09:12:00.123456789123z"}`, valid: true},
		{name: "notSeenSince at a leap second", body: byID + `,"notSeenSince":"2016-12-31T23:59:60Z"}`, valid: true},
		{name: "notSeenSince at a leap second, with an offset", body: byID + `,"notSeenSince":"2017-01-01T00:59:60+01:00"}`, valid: true},
		{name: "notSeenSince at the start of 2000", body: byID + `,"notSeenSince":"2000-01-01T00:00:00Z"}`, valid: true},
		{name: "empty notSeenSince counts as absent", body: byID + `,"notSeenSince":"","attempt":null}`, valid: true},
		{name: "null notSeenSince counts as absent", body: byID + `,"notSeenSince":null}`, valid: true},

		// Refused by the schema and by the worker alike.
		{name: "not JSON", body: `{"requestId":`},
		{name: "JSON array", body: `[1]`},
		{name: "JSON null", body: `null`},
		{name: "data after the object", body: byID + `} {}`},
		{name: "no request id", body: `{"machineId":"` + deviceID + `"}`},
		{name: "empty request id", body: `{"requestId":"","machineId":"` + deviceID + `"}`},
		{name: "null request id", body: `{"requestId":null,"machineId":"` + deviceID + `"}`},
		{name: "request id with a space", body: `{"requestId":"a b","machineId":"` + deviceID + `"}`},
		{name: "request id of 129 characters", body: `{"requestId":"` + long("a", 129) + `","machineId":"` + deviceID + `"}`},
		{name: "request id is a number", body: `{"requestId":1,"machineId":"` + deviceID + `"}`},
		{name: "short machineId", body: `{"requestId":"r1","machineId":"abc"}`},
		{name: "machineId of 41 characters", body: `{"requestId":"r1","machineId":"` + deviceID + `0"}`},
		{name: "machineId path trick", body: `{"requestId":"r1","machineId":"../../../../api/machines/aaaaaaaaaaaaaaa"}`},
		{name: "machineId is a number", body: `{"requestId":"r1","machineId":5}`},
		{name: "both machineId and name", body: byID + `,"computerDnsName":"a.b"}`},
		{name: "neither machineId nor name", body: `{"requestId":"r1"}`},
		{name: "both empty", body: `{"requestId":"r1","machineId":"","computerDnsName":""}`},
		{name: "name with a slash", body: `{"requestId":"r1","computerDnsName":"a/../b"}`},
		{name: "name with a quote", body: `{"requestId":"r1","computerDnsName":"a'b"}`},
		{name: "name starting with a hyphen", body: `{"requestId":"r1","computerDnsName":"-pc.contoso.local"}`},
		{name: "name label of 64 characters", body: `{"requestId":"r1","computerDnsName":"` + long("a", 64) + `.local"}`},
		{name: "name of 256 bytes", body: `{"requestId":"r1","computerDnsName":"` + long("a.", 127) + `ab"}`},
		{name: "comment of 1001 characters", body: byID + `,"comment":"` + long("é", 1001) + `"}`},
		{name: "NUL in comment", body: byID + `,"comment":"a\u0000b"}`},
		{name: "C1 control in comment", body: byID + `,"comment":"a\u0085b"}`},
		{name: "bidi override in requestedBy", body: byID + `,"requestedBy":"admin\u202egnp.exe"}`},
		{name: "zero-width joiner in source", body: byID + `,"source":"cmdb\u200dsync"}`},
		{name: "non-joiner leading a comment", body: byID + `,"comment":"\u200c\u0645\u06cc"}`},
		{name: "non-joiner ending a comment", body: byID + `,"comment":"\u0645\u06cc\u200c"}`},
		{name: "two joiners in a row", body: byID + `,"comment":"\u0645\u200c\u200d\u06cc"}`},
		{name: "joiner beside a space", body: byID + `,"comment":"\u0645 \u200d\u06cc"}`},
		{name: "Hangul filler in requestedBy", body: byID + `,"requestedBy":"admin\u3164"}`},
		{name: "Hangul choseong filler in requestedBy", body: byID + `,"requestedBy":"\u115fadmin"}`},
		{name: "Hangul jungseong filler in source", body: byID + `,"source":"cmdb\u1160sync"}`},
		{name: "half-width Hangul filler in source", body: byID + `,"source":"cmdb\uffa0"}`},
		{name: "Hangul filler alone in comment", body: byID + `,"comment":"\u3164"}`},
		{name: "combining grapheme joiner in comment", body: byID + `,"comment":"Retired\u034f"}`},
		{name: "variation selector alone in comment", body: byID + `,"comment":"\ufe0f"}`},
		{name: "variation selector after a space", body: byID + `,"comment":"Retired \ufe0f"}`},
		{name: "variation selector after an ASCII letter", body: byID + `,"requestedBy":"admin\ufe0f"}`},
		{name: "ideographic variation selector after an ASCII letter", body: byID + `,"source":"cmdb\udb40\udd00"}`},
		{name: "two variation selectors", body: byID + `,"comment":"\u2764\ufe0f\ufe0f"}`},
		{name: "keycap selector without the keycap", body: byID + `,"comment":"1\ufe0f"}`},
		{name: "joiner before a variation selector", body: byID + `,"comment":"\u2764\u200d\ufe0f"}`},
		{name: "Khmer inherent vowel", body: byID + `,"comment":"\u1780\u17b4"}`},
		{name: "line separator in comment", body: byID + `,"comment":"retired\u2028approved by: ciso"}`},
		{name: "paragraph separator in source", body: byID + `,"source":"cmdb\u2029sync"}`},
		{name: "escape sequence in source", body: byID + `,"source":"a\u001b[31mb"}`},
		{name: "source of 257 characters", body: byID + `,"source":"` + long("s", 257) + `"}`},
		{name: "tenant that is no tenant name", body: byID + `,"tenant":"Contoso"}`},
		{name: "comment is an object", body: byID + `,"comment":{}}`},
		{name: "dryRun is a string", body: byID + `,"dryRun":"true"}`},
		{name: "attempt zero", body: byID + `,"attempt":0}`},
		{name: "negative attempt", body: byID + `,"attempt":-1}`},
		{name: "fractional attempt", body: byID + `,"attempt":1.5}`},
		{name: "attempt is a string", body: byID + `,"attempt":"2"}`},
		{name: "attempt beyond Go's int", body: byID + `,"attempt":9223372036854775808}`},
		{name: "notSeenSince that is no time", body: byID + `,"notSeenSince":"yesterday"}`},
		{name: "notSeenSince as a date alone", body: byID + `,"notSeenSince":"2026-08-01"}`},
		{name: "notSeenSince without a zone", body: byID + `,"notSeenSince":"2026-08-01T09:12:00"}`},
		{name: "notSeenSince with a space for T", body: byID + `,"notSeenSince":"2026-08-01 09:12:00Z"}`},
		{name: "notSeenSince with a comma before its fraction", body: byID + `,"notSeenSince":"2026-08-01T09:12:00,5Z"}`},
		{name: "notSeenSince on the 30th of February", body: byID + `,"notSeenSince":"2026-02-30T09:12:00Z"}`},
		{name: "notSeenSince at hour 24", body: byID + `,"notSeenSince":"2026-08-01T24:00:00Z"}`},
		{name: "notSeenSince with an offset of 24 hours", body: byID + `,"notSeenSince":"2026-08-01T09:12:00+24:00"}`},
		{name: "notSeenSince at a leap second of another time", body: byID + `,"notSeenSince":"2016-12-31T12:59:60Z"}`},
		{name: "notSeenSince before 2000", body: byID + `,"notSeenSince":"1999-12-31T23:59:59Z"}`},
		{name: "notSeenSince at .NET's zero time", body: byID + `,"notSeenSince":"0001-01-01T00:00:00Z"}`},
		{name: "notSeenSince as a number", body: byID + `,"notSeenSince":1785575520}`},
		{name: "member in other case next to it", body: byID + `,"dryRun":true,"DryRun":false}`},
		{name: "member in other case alone", body: `{"requestId":"r1","MachineId":"` + deviceID + `"}`},
		{name: "member in upper case", body: byID + `,"REQUESTID":"r2"}`},
		{name: "member with the long s", body: byID + `,"requeſtId":"r2"}`}, // U+017F folds to s
		{name: "dry run in snake case", body: byID + `,"dry_run":true}`},
		{name: "dry run in kebab case beside the field", body: byID + `,"dryRun":false,"dry-run":true}`},
		{name: "dry run with is before it", body: byID + `,"isDryRun":true}`},
		{name: "dry run with is before it, in snake case", body: byID + `,"is_dry_run":true}`},
		{name: "dry run in an unknown member", body: byID + `,"options":{"dryRun":true}}`},
		{name: "dry run with is before it in an unknown member", body: byID + `,"options":{"IsDryRun":true}}`},
		{name: "dry run deep in an unknown member's array", body: byID + `,"meta":[1,{"a":{"DRY-RUN":false}}]}`},
		{name: "dry run with a zero-width space", body: byID + `,"dry\u200bRun":true}`},
		{name: "dry run with a soft hyphen as it is", body: byID + ",\"dry\u00adRun\":true}"},
		{name: "dry run with a no-break space", body: byID + `,"Dry\u00a0Run":true}`},
		{name: "dry run with a zero-width joiner in an unknown member", body: byID + `,"o":[{"dry\u200dRun":true}]}`},
		{name: "dry run with a non-breaking hyphen", body: byID + ",\"dry\u2011run\":true}"},
		{name: "machine id with a minus sign", body: `{"requestId":"r1","machine\u2212id":"` + deviceID + `","computerDnsName":"pc-1"}`},
		{name: "dry run with an en dash in an unknown member", body: byID + `,"o":{"dry\u2013run":1}}`},
		{name: "unknown member with a no-break space", body: byID + `,"change\u00a0ticket":"CHG1"}`, valid: true},
		{name: "dry run with a separator in each word in an unknown member", body: byID + `,"o":{"d-ry_r.un":true}}`},
		{name: "members like dry run's words in an unknown member", body: byID + `,"dryRun":true,"options":{"dry":1,"run":[{"dryRunner":2}]}}`, valid: true},

		// Refused by the worker only: no JSON Schema can say it.
		{name: "not UTF-8", body: byID + ",\"comment\":\"\xff\"}",
			parserOnly: "a schema sees decoded text, not bytes: the reader replaces invalid UTF-8", listed: "the whole request is UTF-8"},
		{name: "lone surrogate in comment", body: byID + `,"comment":"CHG\ud800"}`,
			parserOnly: "a schema sees decoded text: the reader replaces a lone surrogate with U+FFFD", listed: "half a surrogate pair"},
		{name: "more than 64 KiB", body: byID + `,"padding":"` + long("x", 64<<10) + `"}`,
			parserOnly: "a schema sees values, not the size of the document", listed: "at most 65536 bytes"},
		{name: "member that repeats", body: byID + `,"dryRun":true,"dryRun":false}`,
			parserOnly: "a JSON reader keeps one of the members; the schema never sees the other", listed: "no member name appears twice"},
		{name: "tenant of another subject", body: byID + `,"tenant":"fabrikam"}`,
			parserOnly: "the schema does not know the subject the request is published on", listed: "equals the tenant of the subject"},
		{name: "attempt written as 1.0", body: byID + `,"attempt":1.0}`,
			parserOnly: "JSON Schema counts 1.0 as an integer; Go's encoding/json does not", listed: "attempt is written as an integer literal"},
		{name: "attempt written as 2e0", body: byID + `,"attempt":2e0}`,
			parserOnly: "JSON Schema counts 2e0 as an integer; Go's encoding/json does not", listed: "attempt is written as an integer literal"},
		{name: "notSeenSince in 2000 as written, 1999 in UTC", body: byID + `,"notSeenSince":"2000-01-01T00:30:00+01:00"}`,
			parserOnly: "the schema's pattern reads the year as written, not in UTC", listed: "notSeenSince is not before 2000-01-01T00:00:00Z in UTC"},
		{name: "unknown member nested 10001 deep", body: byID + `,"extra":` + long("[", 10001) + long("]", 10001) + `}`,
			parserOnly: "a schema has no keyword for the depth of what it lets through", listed: "nests at most 10000 levels deep",
			instance: func() any {
				var v any = []any{}
				for range 10000 {
					v = []any{v}
				}
				return map[string]any{"requestId": "r1", "machineId": deviceID, "extra": v}
			}},
	}
}

// caseVariantCases refuses, for every field of Request, its name in upper
// case and with the first letter's case flipped, in snake and kebab case
// ("dry_run", "DRY-RUN"), with a space between its letters or a character
// one does not see before it; and accepts it with a visible separator
// before or after it ("_comment", "source."), a name of its own by
// convention (a JSON comment, Elasticsearch's "_source").
func caseVariantCases() []requestCase {
	var cases []requestCase
	for _, name := range jsonFields(reflect.TypeFor[offboard.Request]()) {
		flipped := strings.ToUpper(name[:1]) + name[1:]
		snake := strings.ToLower(regexp.MustCompile(`([a-z])([A-Z])`).ReplaceAllString(name, "${1}_${2}"))
		variants := []string{strings.ToUpper(name), flipped, name[:1] + " " + name[1:], `\u200b` + name, name + " "}
		if snake != strings.ToLower(name) {
			variants = append(variants, snake, strings.ToUpper(strings.ReplaceAll(snake, "_", "-")))
		}
		for _, v := range variants {
			cases = append(cases, requestCase{name: "member " + v, body: byID + `,"` + v + `":null}`})
		}
		for _, v := range []string{"_" + name, name + ".", "-" + name, name + "_"} {
			cases = append(cases, requestCase{name: "member " + v + " of its own", body: byID + `,"` + v + `":"x"}`, valid: true})
		}
	}
	return cases
}

// Every parser failure, by the words of its message: the table must show
// each of them.
var parseFailures = []string{
	"more than 65536", "not UTF-8", "not a JSON object", "must be a", "appears twice", "case-sensitive", "without separators", "one does not see", `without "is"`,
	"requestId is missing", "does not match [A-Za-z0-9._:-]{1,128}", "not 40 hexadecimal", "not a DNS name",
	"characters, more than", "control or formatting", "does not match the subject", "attempt must be at least 1",
	"not both", "is required", "nested more than 10000 levels deep",
	"is not an RFC 3339 time", "date or time is out of range", "offset out of range", "a leap second is 23:59:60 in UTC", "is before 2000",
}

func TestRequestSchemaAgreesWithParseRequest(t *testing.T) {
	t.Parallel()
	sch := compileSchema(t, "request.schema.json")
	comment, _ := readSchema(t, "request.schema.json")["$comment"].(string)
	base := requestCases()
	if len(base) < 25 {
		t.Fatalf("%d sample requests, want at least 25", len(base))
	}
	failed := map[string]bool{}
	for _, tc := range append(base, caseVariantCases()...) {
		_, perr := offboard.ParseRequest([]byte(tc.body), "contoso")
		if perr != nil {
			for _, f := range parseFailures {
				if strings.Contains(perr.Error(), f) {
					failed[f] = true
				}
			}
		}
		t.Run(tc.name, func(t *testing.T) {
			if (perr == nil) != tc.valid {
				t.Fatalf("ParseRequest: error %v, want valid=%v", perr, tc.valid)
			}
			serr := validate(sch, []byte(tc.body))
			if tc.instance != nil {
				serr = sch.Validate(tc.instance())
			}
			if tc.parserOnly != "" {
				if tc.valid {
					t.Fatal("a case only the parser decides must be one it refuses")
				}
				if tc.listed == "" || !strings.Contains(comment, tc.listed) {
					t.Errorf("the schema's $comment does not say %q: a publisher that validates against it is not told", tc.listed)
				}
				if serr != nil {
					t.Fatalf("the schema refuses it (%v) although %s: make it an ordinary case", serr, tc.parserOnly)
				}
				return
			}
			if (serr == nil) != tc.valid {
				t.Fatalf("the schema says valid=%v (%v), ParseRequest valid=%v (%v)", serr == nil, serr, tc.valid, perr)
			}
		})
	}
	for _, f := range parseFailures {
		if !failed[f] {
			t.Errorf("no sample request fails with %q", f)
		}
	}
}

// jsonFields lists the JSON member names of a struct type.
func jsonFields(typ reflect.Type) []string {
	var names []string
	for _, f := range reflect.VisibleFields(typ) {
		name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		if f.IsExported() && name != "-" && name != "" {
			names = append(names, name)
		}
	}
	return names
}

// requiredFields lists the JSON member names a struct always writes (no
// omitempty, no omitzero).
func requiredFields(typ reflect.Type) []string {
	var names []string
	for _, f := range reflect.VisibleFields(typ) {
		name, opts, _ := strings.Cut(f.Tag.Get("json"), ",")
		omitted := slices.Contains(strings.Split(opts, ","), "omitempty") || slices.Contains(strings.Split(opts, ","), "omitzero")
		if f.IsExported() && name != "-" && name != "" && !omitted {
			names = append(names, name)
		}
	}
	return names
}

// schemaDoc is a schema file as plain JSON, to read its keywords.
type schemaDoc map[string]any

func readSchema(t *testing.T, file string) schemaDoc {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(schemaDir, file))
	if err != nil {
		t.Fatal(err)
	}
	var doc schemaDoc
	if err := json.Unmarshal(data, &doc); err != nil {
		t.Fatalf("%s: %v", file, err)
	}
	return doc
}

// at follows a path of object keys.
func (d schemaDoc) at(path ...string) schemaDoc {
	v := map[string]any(d)
	for _, k := range path {
		v, _ = v[k].(map[string]any)
	}
	return v
}

func (d schemaDoc) strings(key string) []string {
	var out []string
	list, _ := d[key].([]any)
	for _, v := range list {
		s, _ := v.(string)
		out = append(out, s)
	}
	return out
}

// The schemas name every field of the Go types, require exactly the ones
// Go always writes, and hold the same enums and limits.
func TestSchemasMatchGoTypes(t *testing.T) {
	t.Parallel()
	req, res := readSchema(t, "request.schema.json"), readSchema(t, "result.schema.json")
	// Properties the schema documents that no Go field carries.
	notInGo := map[string]bool{}
	for _, c := range []struct {
		typ    reflect.Type
		schema schemaDoc
	}{
		{reflect.TypeFor[offboard.Request](), req},
		{reflect.TypeFor[offboard.Result](), res},
		{reflect.TypeFor[offboard.ResultError](), res.at("$defs", "error")},
		{reflect.TypeFor[offboard.Candidate](), res.at("$defs", "candidate")},
		{reflect.TypeFor[offboard.Policy](), res.at("properties", "policy")},
	} {
		props := c.schema.at("properties")
		fields := jsonFields(c.typ)
		for _, f := range fields {
			if props[f] == nil {
				t.Errorf("%v: field %q is not a property of the schema", c.typ, f)
			}
			if notInGo[f] {
				t.Errorf("%v has field %q now: drop it from notInGo", c.typ, f)
			}
		}
		for p := range props {
			if !slices.Contains(fields, p) && !notInGo[p] {
				t.Errorf("%v: the schema's property %q is no field of the Go type", c.typ, p)
			}
		}
		want, got := requiredFields(c.typ), c.schema.strings("required")
		slices.Sort(want)
		slices.Sort(got)
		if !slices.Equal(got, want) {
			t.Errorf("%v: the schema requires %q; the fields Go always writes are %q", c.typ, got, want)
		}
	}

	enums := []struct {
		what      string
		got, want []string
	}{
		{"outcome", res.at("properties", "outcome").strings("enum"), offboard.Outcomes},
		{"error code", res.at("$defs", "error", "properties", "code").strings("enum"), offboard.FailureCodes},
		{"priority", res.at("properties", "priority").strings("enum"), []string{string(offboard.Normal), string(offboard.Bulk)}},
	}
	for _, e := range enums {
		if !slices.Equal(e.got, e.want) {
			t.Errorf("%s enum %q, want %q", e.what, e.got, e.want)
		}
	}
	anyOf, _ := req.at("propertyNames")["anyOf"].([]any)
	if len(anyOf) == 0 || !slices.Equal(schemaDoc(anyOf[0].(map[string]any)).strings("enum"), jsonFields(reflect.TypeFor[offboard.Request]())) {
		t.Errorf("propertyNames does not list the request's fields in order: %v", anyOf)
	}

	limits := []struct {
		schema schemaDoc
		want   int
	}{
		{req.at("properties", "comment"), offboard.MaxCommentLength},
		{req.at("properties", "requestedBy"), offboard.MaxLabelLength},
		{req.at("properties", "source"), offboard.MaxLabelLength},
		{req.at("properties", "computerDnsName"), offboard.MaxDNSNameLength},
		{res.at("properties", "requestedBy"), offboard.MaxLabelLength},
		{res.at("properties", "source"), offboard.MaxLabelLength},
		{res.at("$defs", "error", "properties", "message"), offboard.MaxMessageLength},
	}
	for _, l := range limits {
		if got, _ := l.schema["maxLength"].(float64); int(got) != l.want {
			t.Errorf("maxLength %v in %v, want %d", l.schema["maxLength"], l.schema["description"], l.want)
		}
	}
}

// Results of every outcome and every failure code, as the worker writes
// them, are valid; results that break the contract are not.
func TestResultSchema(t *testing.T) {
	t.Parallel()
	sch := compileSchema(t, "result.schema.json")
	received := time.Date(2026, 11, 24, 10, 0, 0, 123456789, time.UTC)
	action, err := json.Marshal(mdesim.MachineAction{
		ID: "be8da97b-9e22-4f33-8528-5c8d8b6fffd6", Type: "Offboard", Title: "Offboard",
		Requestor: "66666666-7777-8888-9999-000000000000", RequestorComment: "Retired in CMDB (CHG0012345)",
		Status: "Pending", MachineID: deviceID, ComputerDNSName: "laptop-123.contoso.local",
		CreationDateTimeUTC: received, LastUpdateDateTimeUTC: received, RequestSource: "PublicApi",
	})
	if err != nil {
		t.Fatal(err)
	}
	result := func(outcome offboard.Outcome, edit ...func(*offboard.Result)) offboard.Result {
		r := offboard.Result{
			RequestID: "3f0c2a1e-8d4b", Tenant: "contoso", MachineID: deviceID, Outcome: outcome,
			Attempts: 1, Attempt: 1, RequestedBy: "cmdb-sync", Source: "servicenow:CHG0012345",
			RequestSeq: 42, Priority: offboard.Normal, ReceivedAt: received, CompletedAt: received.Add(time.Second),
		}
		switch outcome {
		case offboard.OutcomeCreated, offboard.OutcomeAlreadyPending:
			r.MachineAction = action
		case offboard.OutcomeDryRun:
			r.Attempts = 0
		}
		for _, e := range edit {
			e(&r)
		}
		return r
	}
	failed := func(e *offboard.ResultError, edit ...func(*offboard.Result)) offboard.Result {
		return result(offboard.OutcomeFailed, append([]func(*offboard.Result){func(r *offboard.Result) { r.Error = e }}, edit...)...)
	}
	cases := map[string]struct {
		r     offboard.Result
		valid bool
	}{
		"created":         {result(offboard.OutcomeCreated), true},
		"already_pending": {result(offboard.OutcomeAlreadyPending, func(r *offboard.Result) { r.Priority = offboard.Bulk }), true},
		"dry_run by name": {result(offboard.OutcomeDryRun, func(r *offboard.Result) { r.ComputerDNSName = "laptop-123.contoso.local" }), true},
		"retry":           {result(offboard.OutcomeCreated, func(r *offboard.Result) { r.Attempt = 2; r.Attempts = 3 }), true},
		"action cut down": {result(offboard.OutcomeCreated, func(r *offboard.Result) {
			r.MachineAction = mde.CutAction(append(action[:len(action)-1:len(action)-1], `,"troubleshootInfo":{"x":"`+strings.Repeat("x", 2<<20)+`"}}`...))
		}), true},
		"request that failed its checks": {failed(offboard.Failed(offboard.CodeInvalidRequest, `machineId "../x" is not 40 hexadecimal characters`),
			func(r *offboard.Result) {
				*r = offboard.Result{Tenant: r.Tenant, Outcome: r.Outcome, Error: r.Error, Attempt: 1, RequestSeq: 7}
			}), true},
		"message cut to length": {failed(offboard.Failed(offboard.CodeAPIError, strings.Repeat("é", 5000))), true},
		"a proxy's own status":  {failed(&offboard.ResultError{Code: offboard.CodeAPIError, Message: "x", HTTPStatus: 799}), true},

		"failed without error":       {result(offboard.OutcomeFailed), false},
		"created without action":     {result(offboard.OutcomeCreated, func(r *offboard.Result) { r.MachineAction = nil }), false},
		"dry run with error":         {result(offboard.OutcomeDryRun, func(r *offboard.Result) { r.Error = offboard.Failed(offboard.CodeInternal, "x") }), false},
		"failed with action":         {failed(offboard.Failed(offboard.CodeAPIError, "x"), func(r *offboard.Result) { r.MachineAction = action }), false},
		"unknown outcome":            {result("done"), false},
		"unknown code":               {failed(offboard.Failed("oops", "x")), false},
		"message too long":           {failed(&offboard.ResultError{Code: offboard.CodeInternal, Message: strings.Repeat("x", 1001)}), false},
		"blocked without rule":       {failed(offboard.Failed(offboard.CodeBlockedByPolicy, "x")), false},
		"rule of another code":       {failed(&offboard.ResultError{Code: offboard.CodeForbidden, Message: "x", Rule: "requireInactiveFor"}), false},
		"ambiguous, no candidates":   {failed(offboard.Failed(offboard.CodeAmbiguousMachine, "x")), false},
		"attempt zero":               {result(offboard.OutcomeCreated, func(r *offboard.Result) { r.Attempt = 0 }), false},
		"upper-case machineId":       {result(offboard.OutcomeCreated, func(r *offboard.Result) { r.MachineID = strings.ToUpper(deviceID) }), false},
		"unknown priority":           {result(offboard.OutcomeCreated, func(r *offboard.Result) { r.Priority = "urgent" }), false},
		"HTTP status out of range":   {failed(&offboard.ResultError{Code: offboard.CodeAPIError, Message: "x", HTTPStatus: 1000}), false},
		"action that is no object":   {result(offboard.OutcomeCreated, func(r *offboard.Result) { r.MachineAction = json.RawMessage(`"x"`) }), false},
		"request id of bad form":     {result(offboard.OutcomeCreated, func(r *offboard.Result) { r.RequestID = "a b" }), false},
		"requestedBy too long":       {result(offboard.OutcomeCreated, func(r *offboard.Result) { r.RequestedBy = strings.Repeat("x", 257) }), false},
		"candidates of another code": {failed(&offboard.ResultError{Code: offboard.CodeMachineNotFound, Message: "x", Candidates: []offboard.Candidate{{MachineID: deviceID}, {MachineID: deviceID}}}), false},
	}
	// A failed result with every code, with what each code carries.
	for _, code := range offboard.FailureCodes {
		e := offboard.Failed(code, "no device has the id "+deviceID)
		switch code {
		case offboard.CodeAmbiguousMachine:
			e.Candidates = []offboard.Candidate{
				{MachineID: deviceID, LastSeen: "2026-11-20T08:00:00Z", HealthStatus: "Active"},
				{MachineID: strings.Repeat("ab", 20), LastSeen: "2026-08-26T08:00:00Z", HealthStatus: "Inactive"},
			}
		case offboard.CodeBlockedByPolicy:
			e.Rule = "protect.machineTags"
		case offboard.CodeMachineNotFound, offboard.CodeUnsupportedOS, offboard.CodeForbidden, offboard.CodeUnauthorized, offboard.CodeAPIRejected, offboard.CodeAPIError:
			e.HTTPStatus, e.APICode = 404, "ResourceNotFound"
		}
		cases["failed "+code] = struct {
			r     offboard.Result
			valid bool
		}{failed(e), true}
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			data, err := tc.r.Marshal()
			if err != nil {
				t.Fatal(err)
			}
			if err := validate(sch, data); (err == nil) != tc.valid {
				t.Fatalf("valid=%v, want %v: %v\n%s", err == nil, tc.valid, err, data)
			}
		})
	}
}
