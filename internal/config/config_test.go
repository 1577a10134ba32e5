package config

import (
	"bytes"
	"fmt"
	"hash/crc32"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/contoso-secops/mde-offboard/internal/limiter"
	"github.com/contoso-secops/mde-offboard/offboard"
)

const okTenant = `
  - name: contoso
    tenantId: 11111111-2222-3333-4444-555555555555
    clientId: 66666666-7777-8888-9999-000000000000
    clientSecretFile: /var/run/secrets/contoso/client-secret
`

// namedTenant is okTenant under another name, with an application of its
// own (a name, not the letters of its clientId's last group).
func namedTenant(name string) string {
	s := strings.Replace(okTenant, "contoso", name, 2)
	return strings.Replace(s, "9999-000000000000", fmt.Sprintf("9999-%012x", crc32.ChecksumIEEE([]byte(name))), 1)
}

// otherTenant is namedTenant in an Entra ID tenant of its own.
func otherTenant(name string) string {
	return strings.Replace(namedTenant(name), "4444-555555555555", fmt.Sprintf("4444-%012x", crc32.ChecksumIEEE([]byte(name))), 1)
}

// TestOneApplicationUnderTwoNames: two names for one application in one
// tenant would each take the API's whole quota, which holds per
// application and tenant.
func TestOneApplicationUnderTwoNames(t *testing.T) {
	t.Parallel()
	twice := strings.Replace(okTenant, "contoso", "contoso-eu", 1)
	_, err := Parse([]byte("tenants:" + okTenant + twice))
	if err == nil || !strings.Contains(err.Error(), `tenant "contoso-eu": the same tenantId and clientId as tenant "contoso"`) {
		t.Errorf("one application under two names: %v", err)
	}
	if _, err := Parse([]byte("tenants:" + okTenant + namedTenant("contoso-eu"))); err != nil {
		t.Errorf("another application in the same tenant: %v", err)
	}
}

func TestParseDefaults(t *testing.T) {
	t.Parallel()
	f, err := Parse([]byte("tenants:" + okTenant))
	if err != nil {
		t.Fatal(err)
	}
	tn := f.Tenants[0]
	if tn.Resolved.Cloud.APIBaseURL != "https://api.securitycenter.microsoft.com" ||
		tn.Resolved.Cloud.Scope != "https://api.securitycenter.microsoft.com/.default" {
		t.Errorf("cloud = %+v, want commercial", tn.Resolved.Cloud)
	}
	for _, api := range []string{"offboard", "machines", "machineactions"} {
		ws := tn.Resolved.Windows[api]
		if len(ws) != 2 || ws[0] != (limiter.Window{Count: 100, Length: time.Minute}) || ws[1] != (limiter.Window{Count: 1500, Length: time.Hour}) {
			t.Errorf("%s limits = %v, want 100/1m and 1500/1h", api, ws)
		}
	}
	if tn.MaxInFlight != 4 {
		t.Errorf("maxInFlight = %d, want 4", tn.MaxInFlight)
	}
	c, err := tn.RenderComment(CommentData{RequestID: "r-1", Source: "cmdb"})
	if err != nil || c != "Offboarded by mde-offboard: cmdb r-1" {
		t.Errorf("default comment = %q, %v", c, err)
	}
}

// TestCommentThatRendersNoText: a template of fields a request does not
// have gives no text, which the API refuses as a missing comment: the
// default template gives it then.
func TestCommentThatRendersNoText(t *testing.T) {
	t.Parallel()
	f, err := Parse([]byte("tenants:" + okTenant + `    comment: "{{.Source}} {{.RequestedBy}}"
`))
	if err != nil {
		t.Fatal(err)
	}
	tn := f.Tenants[0]
	if c, err := tn.RenderComment(CommentData{RequestID: "r-1", Source: "cmdb"}); err != nil || c != "cmdb" {
		t.Errorf("with a source: %q, %v; want the tenant's template", c, err)
	}
	if c, err := tn.RenderComment(CommentData{RequestID: "r-1"}); err != nil || c != "Offboarded by mde-offboard: r-1" {
		t.Errorf("with no source: %q, %v; want the default comment", c, err)
	}
}

func TestParseLimitsAndComment(t *testing.T) {
	t.Parallel()
	f, err := Parse([]byte("tenants:" + okTenant + `    comment: "Retired {{.Source}} {{.RequestID}}"
    apiBaseURL: https://127.0.0.1:8443
    limits:
      offboard: ["10/200ms", "40/2s"]
`))
	if err != nil {
		t.Fatal(err)
	}
	tn := f.Tenants[0]
	if got := tn.Resolved.Windows["offboard"]; len(got) != 2 || got[0].Count != 10 || got[1].Length != 2*time.Second {
		t.Errorf("offboard limits = %v", got)
	}
	if got := tn.Resolved.Windows["machines"]; len(got) != 2 || got[0].Count != 100 {
		t.Errorf("machines limits = %v, want the default", got)
	}
	long, err := tn.RenderComment(CommentData{Source: strings.Repeat("é", 2000)})
	if err != nil || utf8.RuneCountInString(long) != offboard.MaxCommentLength || !utf8.ValidString(long) {
		t.Errorf("long comment: %d characters, valid %v, %v; want cut to %d characters", utf8.RuneCountInString(long), utf8.ValidString(long), err, offboard.MaxCommentLength)
	}
}

// TestTenantsShareACommentTemplate: tenants with the same comment text
// hold one parsed template (thousands of tenants mostly keep the
// default), and each still renders its own request.
func TestTenantsShareACommentTemplate(t *testing.T) {
	t.Parallel()
	tenant := func(name, comment string) string {
		s := namedTenant(name)
		if comment != "" {
			s += "    comment: \"" + comment + "\"\n"
		}
		return s
	}
	f, err := Parse([]byte("tenants:" + tenant("a", "") + tenant("b", "") +
		tenant("c", "Retired {{.Tenant}} {{.RequestID}}") + tenant("d", "Retired {{.Tenant}} {{.RequestID}}")))
	if err != nil {
		t.Fatal(err)
	}
	a, b, c, d := f.Tenants[0], f.Tenants[1], f.Tenants[2], f.Tenants[3]
	if a.Resolved.Comment != b.Resolved.Comment || c.Resolved.Comment != d.Resolved.Comment {
		t.Error("tenants with the same comment text hold templates of their own")
	}
	if a.Resolved.Comment == c.Resolved.Comment {
		t.Error("tenants with different comment texts share a template")
	}
	for _, tc := range []struct {
		tn   *Tenant
		want string
	}{{a, "Offboarded by mde-offboard: cmdb r-a"}, {c, "Retired c r-c"}, {d, "Retired d r-d"}} {
		got, err := tc.tn.RenderComment(CommentData{Tenant: tc.tn.Name, RequestID: "r-" + tc.tn.Name, Source: "cmdb"})
		if err != nil || got != tc.want {
			t.Errorf("%s: comment %q, %v; want %q", tc.tn.Name, got, err, tc.want)
		}
	}
}

func TestParseErrors(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ name, yaml, want string }{
		{"empty", "tenants: []", "no tenants"},
		{"empty file", "", "tenants file: no tenants"},
		{"comments only", "# tenants to come\n", "tenants file: no tenants"},
		// A second document (two files put together) was dropped without
		// a word, and its tenants' requests answered unknown_tenant.
		{"two documents", "tenants:" + okTenant + "---\ntenants:" + namedTenant("fabrikam"), "a second YAML document"},
		{"a second document not YAML", "tenants:" + okTenant + "---\n[\n", "a second YAML document"},
		{"unknown key", "tenants:" + okTenant + "    clientSecret: hunter2\n", "field clientSecret not found"},
		{"bad name", strings.Replace("tenants:"+okTenant, "contoso", "Contoso!", 1), "name must match"},
		{"bad tenant id", strings.Replace("tenants:"+okTenant, "11111111-2222", "x", 1), "tenantId must be a GUID"},
		{"no credential", strings.Replace("tenants:"+okTenant, "    clientSecretFile: /var/run/secrets/contoso/client-secret\n", "", 1), "set exactly one"},
		{"two credentials", "tenants:" + okTenant + "    certificateFile: /c.pem\n", "clientSecretFile, certificateFile"},
		{"bad cloud", "tenants:" + okTenant + "    cloud: mars\n", "cloud: want commercial"},
		{"http API", "tenants:" + okTenant + "    apiBaseURL: http://api.example.com\n", "only for loopback"},
		{"http login", "tenants:" + okTenant + "    authorityHost: http://127.0.0.1:8443\n", "must use https"},
		{"bad limit", "tenants:" + okTenant + "    limits:\n      offboard: [\"100 per minute\"]\n", "limits.offboard"},
		{"empty limits", "tenants:" + okTenant + "    limits:\n      offboard: []\n", "no limits"},
		{"unknown API", "tenants:" + okTenant + "    limits:\n      isolate: [\"1/1m\"]\n", "unknown API \"isolate\""},
		{"bad template", "tenants:" + okTenant + "    comment: \"{{.Nope}}\"\n", "comment template"},
		{"duplicate", "tenants:" + okTenant + okTenant, "configured twice"},
		{"empty tenant item", "tenants:\n  -\n", "line 2: tenants[0] has no value"},
		{"limit without value", "tenants:" + okTenant + "    limits:\n      offboard:\n", "tenants[0].limits.offboard has no value"},
		{"name null", strings.Replace("tenants:"+okTenant, "name: contoso", "name: ~", 1), "tenants[0].name has no value"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse([]byte(tc.yaml))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Parse error = %v, want one containing %q", err, tc.want)
			}
		})
	}
}

// A secret pasted in place of the tenants file, or a value in the wrong
// place, is not quoted in the error, which the worker prints.
func TestParseErrorQuotesNoValue(t *testing.T) {
	t.Parallel()
	for _, data := range []string{
		"Sup3rS3cretValue~with.chars", "tenants: Sup3rS3cretValue~with.chars\n",
		// A value that begins with '*' is an alias: the decoder names
		// one it does not know (of letters, digits, '-' and '_').
		"tenants:" + okTenant + "    certificatePasswordFile: *Sup3rS3cret-with_chars\n",
		"tenants:" + okTenant + "    certificatePasswordFile: *Sup3rS3cret\n    tokenFile: x\n",
	} {
		_, err := Parse([]byte(data))
		if err == nil || strings.Contains(err.Error(), "Sup3r") {
			t.Errorf("%q: error %v", data, err)
		}
	}
}

// A value the decoder quotes in its error is left out whole, also when it
// holds a backquote, which the decoder writes as it is.
func TestParseErrorQuotesNoValueWithABackquote(t *testing.T) {
	t.Parallel()
	for _, entry := range []string{
		"    workloadIdentity: S`ecr3t\n",
		"    maxInFlight: \"S`ecr3t\"\n",
		"    maxInFlight: \"S`e`cr3t\"\n",
		"    maxInFlight: !!int S`ecr3t\n",
		"    workloadIdentity: Se`cr3t\n    maxInFlight: \"S`ecr3t\"\n",
	} {
		_, err := Parse([]byte("tenants:" + okTenant + entry))
		if err == nil || strings.Contains(err.Error(), "cr3") || strings.Contains(err.Error(), "ecr") {
			t.Errorf("%q: error %v", entry, err)
		}
	}
}

// A limit, a budget, a protected device or a cloud that does not read as
// one is named by its place, never quoted: a secret pasted there would be
// shown.
func TestParseLimitAndGuardErrorsQuoteNoValue(t *testing.T) {
	t.Parallel()
	const secret = "Abc8Q~S3cret.value/1m"
	for _, tc := range []struct{ yaml, want string }{
		{"    limits:\n      offboard: [\"100/1m\", \"" + secret + "\"]\n", "limits.offboard: limit 2 of 2: a limit's count"},
		{"    guards:\n      budget: \"" + secret + "\"\n", "guards.budget: a budget's count"},
		{"    guards:\n      protect:\n        machineIds: [\"" + secret + "\"]\n", "guards.protect.machineIds[0]: not a device id"},
		{"    guards:\n      protect:\n        computerDnsNames: [\"[" + secret + "\"]\n", "guards.protect.computerDnsNames[0]: not a glob"},
		{"    cloud: \"" + secret + "\"\n", "cloud: want commercial"},
	} {
		wantErrWithout(t, "tenants:"+okTenant+tc.yaml, tc.want, secret)
	}
}

// wantErrWithout checks that Parse refuses the file with an error that
// holds want and does not quote the secret.
func wantErrWithout(t *testing.T, file, want, secret string) {
	t.Helper()
	_, err := Parse([]byte(file))
	if err == nil {
		t.Errorf("%s: no error", want)
		return
	}
	if strings.Contains(err.Error(), "S3cret") {
		t.Errorf("%s: the error quotes the value", want)
	}
	if !strings.Contains(err.Error(), want) {
		t.Errorf("error %q does not hold %q", strings.ReplaceAll(err.Error(), secret, "…"), want)
	}
}

// A tenant's name that is not one is not quoted, in its own error or in
// the others of its entry: a secret pasted there, or on the line below
// (a plain scalar goes on over the lines indented under it), would be
// shown. A valid name still names its tenant.
func TestParseNameErrorQuotesNoValue(t *testing.T) {
	t.Parallel()
	const secret = "Abc8Q~S3cret.value"
	for _, tc := range []struct{ yaml, want string }{
		{strings.Replace(okTenant, "name: contoso", "name: "+secret, 1), "tenant 1: name must match"},
		{strings.Replace(okTenant, "  - name: contoso\n    ", "  - ", 1) + "    name: contoso\n      " + secret + "\n", "tenant 1: name must match"},
		{strings.Replace(okTenant, "name: contoso", "name: \""+secret+"\"", 1) + "    cloud: nowhere\n", "tenant 1: name must match"},
		{okTenant + "    cloud: nowhere\n", `tenant 1 ("contoso"): cloud: want`},
	} {
		wantErrWithout(t, "tenants:"+tc.yaml, tc.want, secret)
	}
}

// A tenants file that is not a regular file (a device read by mistake,
// /dev/zero, which never ends) is refused at once, as is one too large.
func TestLoadRefusesWhatIsNotATenantsFile(t *testing.T) {
	t.Parallel()
	if _, err := Load("/dev/zero"); err == nil || !strings.Contains(err.Error(), "not a regular file") {
		t.Errorf("/dev/zero: %v", err)
	}
	big := filepath.Join(t.TempDir(), "big.yaml")
	if err := os.WriteFile(big, bytes.Repeat([]byte("#\n"), maxFileSize/2+1), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Load(big); err == nil || !strings.Contains(err.Error(), "larger than") {
		t.Errorf("a file over %d bytes: %v", maxFileSize, err)
	}
}

// A duration that does not read as one is named by its key, never
// quoted: a secret pasted there would be shown.
func TestParseDurationErrorQuotesNoValue(t *testing.T) {
	t.Parallel()
	const secret = "Abc8Q~S3cret.value"
	for _, tc := range []struct{ yaml, key string }{
		{"    guards:\n      requireInactiveFor: " + secret + "\n", "line 7: tenants[0].guards.requireInactiveFor"},
		{"    tracking:\n      firstCheck: " + secret + "\n", "line 7: tenants[0].tracking.firstCheck"},
		{"    tracking:\n      enabled: true\n      maxInterval: \"" + secret + "\"\n", "line 8: tenants[0].tracking.maxInterval"},
		{"    tracking:\n      maxAge: '-" + secret + "'\n", "line 7: tenants[0].tracking.maxAge"},
		{"    tracking:\n      maxAge: -1h\n", "line 7: tenants[0].tracking.maxAge"},
		{"    tracking: {maxAge: 1h, firstCheck: " + secret + "}\n", "line 6: tenants[0].tracking.firstCheck"},
		// A list or a map where a duration goes is named by its key too.
		{"    tracking: {firstCheck: [" + secret + "]}\n", "line 6: tenants[0].tracking.firstCheck"},
		{"    guards:\n      requireInactiveFor:\n        hours: " + secret + "\n", "line 8: tenants[0].guards.requireInactiveFor"},
	} {
		_, err := Parse([]byte("tenants:" + okTenant + tc.yaml))
		if err == nil {
			t.Errorf("%s: no error", tc.key)
			continue
		}
		if strings.Contains(err.Error(), "S3cret") {
			t.Errorf("%s: the error quotes the value", tc.key)
		}
		if want := tc.key + " is not a duration such as 90s, 5m, 1h or 90d"; !strings.Contains(err.Error(), want) {
			t.Errorf("%s: error %q does not hold %q", tc.key, strings.ReplaceAll(err.Error(), secret, "…"), want)
		}
	}
}

// TestParseDocumentMarkers: a file that starts with ---, or ends with an
// empty document or ..., holds one document and is read as such.
func TestParseDocumentMarkers(t *testing.T) {
	t.Parallel()
	for _, y := range []string{
		"---\ntenants:" + okTenant,
		"tenants:" + okTenant + "---\n",
		"tenants:" + okTenant + "---\n# nothing more\n",
		"tenants:" + okTenant + "...\n",
	} {
		if f, err := Parse([]byte(y)); err != nil || len(f.Tenants) != 1 {
			t.Errorf("Parse(%q): %v", y, err)
		}
	}
}

// TestOneTenantUnderTwoNamesWithOtherGuards: guards protect a tenant's
// devices, and a request names its tenant by its subject. Two names of
// one Entra tenant (two applications) with other guards let a request
// published for the one without them offboard a device the other
// protects: such a file is refused. The same guards, written in another
// order or case, load.
func TestOneTenantUnderTwoNamesWithOtherGuards(t *testing.T) {
	t.Parallel()
	guards := func(lines string) string { return "    guards:\n" + lines }
	protected := guards("      protect:\n        machineTags: [tier0, DoNotOffboard]\n        computerDnsNames: [\"dc*\"]\n")
	for name, c := range map[string]struct {
		first, second string
		refused       bool
	}{
		"guards on one name only": {protected, "", true},
		"other tags":              {protected, guards("      protect:\n        machineTags: [tier0]\n        computerDnsNames: [\"dc*\"]\n"), true},
		"inactivity on one only":  {guards("      requireInactiveFor: 720h\n"), "", true},
		"the same guards":         {protected, guards("      protect:\n        computerDnsNames: [\"DC*\"]\n        machineTags: [donotoffboard, tier0]\n"), false},
		"a budget of its own":     {protected + "      budget: 10/24h\n", protected, false},
		"none on either":          {"", "", false},
		// Compared as the worker compares: a tag's case by Unicode's
		// folding (a final sigma is a sigma), the Turkish dotted and
		// dotless I as I and i, a glob as it is matched (full-width
		// letters are the letters they stand for there, as in a
		// device's name).
		"a dotted capital I":     {guards("      protect:\n        machineTags: [İstanbul]\n"), guards("      protect:\n        machineTags: [istanbul]\n"), false},
		"a dotless i":            {guards("      protect:\n        machineTags: [CRITICAL]\n"), guards("      protect:\n        machineTags: [crıtıcal]\n"), false},
		"another letter":         {guards("      protect:\n        machineTags: [İstanbul]\n"), guards("      protect:\n        machineTags: [estanbul]\n"), true},
		"an en dash":             {guards("      protect:\n        machineTags: [Tier - 0]\n"), guards("      protect:\n        machineTags: [Tier \u2013 0]\n"), false},
		"final and medial sigma": {guards("      protect:\n        rbacGroups: [ΟΔΟΣ]\n"), guards("      protect:\n        rbacGroups: [οδος]\n"), false},
		"German capitals":        {guards("      protect:\n        machineTags: [Außendienst]\n"), guards("      protect:\n        machineTags: [AUSSENDIENST]\n"), false},
		"a full-width glob":      {guards("      protect:\n        computerDnsNames: [\"ｄｃ*\"]\n"), guards("      protect:\n        computerDnsNames: [\"dc*\"]\n"), false},
	} {
		_, err := Parse([]byte("tenants:" + okTenant + c.first + namedTenant("contoso-eu") + c.second))
		switch {
		case c.refused && (err == nil || !strings.Contains(err.Error(), `tenant "contoso-eu": the same tenantId as tenant "contoso", with other guards`)):
			t.Errorf("%s: %v; want it refused", name, err)
		case !c.refused && err != nil:
			t.Errorf("%s: %v; want it loaded", name, err)
		}
	}
}

// TestCommentTemplateOutputIsBounded: a template that writes far more
// than a comment holds is cut where the comment would be, not rendered
// whole into memory, at start and for each request. Not parallel: it
// counts the bytes the process allocates.
func TestCommentTemplateOutputIsBounded(t *testing.T) {
	data := []byte("tenants:" + okTenant + `    comment: '{{printf "%0999999d" 0}} {{.RequestID}}'
`)
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	f, err := Parse(data)
	if err != nil {
		t.Fatal(err)
	}
	c, err := f.Tenants[0].RenderComment(CommentData{RequestID: "r-1"})
	runtime.ReadMemStats(&after)
	if err != nil || c != strings.Repeat("0", offboard.MaxCommentLength) {
		t.Errorf("comment of %d characters, %v; want %d zeros", len(c), err, offboard.MaxCommentLength)
	}
	// printf builds its megabyte in memory, about 4 MiB with its
	// buffer's growth, once at the check and once here; whole, the
	// output would take 20 MiB more.
	if got := after.TotalAlloc - before.TotalAlloc; got > 12<<20 {
		t.Errorf("parsing and rendering allocated %d MiB, want printf's own at most", got>>20)
	}
}

// TestCommentTemplateCutMidCharacter: a template's output cut at its
// bound in the middle of a character keeps no part of that character,
// which the comment would carry as U+FFFD.
func TestCommentTemplateCutMidCharacter(t *testing.T) {
	t.Parallel()
	data := []byte("tenants:" + okTenant + "    comment: '{{printf \"%65535s\" \"\"}}é'\n")
	f, err := Parse(data)
	if err != nil {
		t.Fatal(err)
	}
	c, err := f.Tenants[0].RenderComment(CommentData{RequestID: "r-1"})
	if err != nil || strings.ContainsRune(c, utf8.RuneError) {
		t.Errorf("comment %q, %v; want no replacement character", c, err)
	}
}

// TestCommentTemplateRefusesLoops: a comment template runs at start and
// for every request, and its six text fields give a loop nothing to go
// over. A range over a large number, or a template that calls itself
// twice, writes nothing and runs for hours: refused when the file is read.
func TestCommentTemplateRefusesLoops(t *testing.T) {
	t.Parallel()
	for _, comment := range []string{
		`{{range 1000000000000}}{{end}}{{.RequestID}}`,
		`{{if .Source}}{{range $i := 1000000000000}}{{end}}{{end}}{{.RequestID}}`,
		`{{define "a"}}{{template "a" .}}{{template "a" .}}{{end}}{{template "a" .}}{{.RequestID}}`,
		`{{block "b" .}}{{.RequestID}}{{end}}`,
	} {
		data := []byte("tenants:" + okTenant + "    comment: '" + comment + "'\n")
		_, err := Parse(data)
		if err == nil || !strings.Contains(err.Error(), "comment") {
			t.Errorf("%s: %v, want the comment refused", comment, err)
		}
	}
	data := []byte("tenants:" + okTenant + `    comment: '{{with .Source}}{{.}}: {{else}}no source: {{end}}{{if eq .Tenant "contoso"}}C {{end}}{{printf "%.8s" .RequestID}}'` + "\n")
	f, err := Parse(data)
	if err != nil {
		t.Fatal(err)
	}
	if c, err := f.Tenants[0].RenderComment(CommentData{RequestID: "r-123456789", Tenant: "contoso"}); err != nil || c != "no source: C r-123456" {
		t.Errorf("comment %q, %v", c, err)
	}
}
