package config

import (
	"errors"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestParseGuards(t *testing.T) {
	t.Parallel()
	f, err := Parse([]byte("tenants:" + okTenant + `    guards:
      protect:
        machineIds: ["1E5BC9D7E413DDD7902C2932E418702B84D0CC07"]
        computerDnsNames: ["DC*.contoso.local.", "*.tier0.contoso.local"]
        machineTags: ["DoNotOffboard"]
        rbacGroups: ["Tier 0 servers"]
      requireInactiveFor: 90d
` + otherTenant("fabrikam")))
	if err != nil {
		t.Fatal(err)
	}
	g := f.Tenants[0].Guards
	if !slices.Equal(g.Protect.MachineIDs, []string{"1e5bc9d7e413ddd7902c2932e418702b84d0cc07"}) {
		t.Errorf("machineIds = %q, want lower case", g.Protect.MachineIDs)
	}
	if !slices.Equal(g.Protect.ComputerDNSNames, []string{"dc*.contoso.local", "*.tier0.contoso.local"}) {
		t.Errorf("computerDnsNames = %q, want lower case without the root dot", g.Protect.ComputerDNSNames)
	}
	if g.RequireInactiveFor == nil || time.Duration(*g.RequireInactiveFor) != 90*24*time.Hour {
		t.Errorf("requireInactiveFor = %v, want 90 days", g.RequireInactiveFor)
	}
	if got := g.Checked(); !slices.Equal(got, []string{GuardProtect, GuardRequireInactiveFor}) || !g.NeedsDevice() {
		t.Errorf("Checked() = %q, NeedsDevice() = %v", got, g.NeedsDevice())
	}
	if none := f.Tenants[1].Guards; none.Checked() != nil || none.NeedsDevice() {
		t.Errorf("a tenant without guards: Checked() = %q, NeedsDevice() = %v", none.Checked(), none.NeedsDevice())
	}
}

// TestGlobSpaces: spaces around a glob are left out, as around a tag or a
// group; they used to stay, and such a glob matched no device name.
func TestGlobSpaces(t *testing.T) {
	t.Parallel()
	f, err := Parse([]byte("tenants:" + okTenant + `    guards:
      protect:
        computerDnsNames: [" DC*.contoso.local ", "*.tier0.contoso.local. "]
`))
	if err != nil {
		t.Fatal(err)
	}
	if got := f.Tenants[0].Guards.Protect.ComputerDNSNames; !slices.Equal(got, []string{"dc*.contoso.local", "*.tier0.contoso.local"}) {
		t.Errorf("computerDnsNames = %q, want them without the spaces", got)
	}
	_, err = Parse([]byte("tenants:" + okTenant + "    guards:\n      protect:\n        computerDnsNames: [\"ok\", \" \"]\n"))
	if err == nil || !strings.Contains(err.Error(), "guards.protect.computerDnsNames[1]") {
		t.Errorf("a blank glob: Parse error = %v, want one naming it", err)
	}
}

// TestGuardInvisibleCharacters: a glob, tag or group that holds a
// character one does not see (a zero-width space or a byte order mark a
// copy from a web page or a chat left behind, a soft hyphen, a control
// character) matches no device, whose names, tags and groups Defender
// writes without them: it would protect nothing without a word. Each
// stops the worker, named by its place; they used to be taken.
func TestGuardInvisibleCharacters(t *testing.T) {
	t.Parallel()
	guards := "tenants:" + okTenant + "    guards:\n      protect:\n"
	for _, tc := range []struct{ yaml, want string }{
		{`        computerDnsNames: ["dc*.contoso.local\u200b"]` + "\n", "guards.protect.computerDnsNames[0]: "},
		{`        computerDnsNames: ["ok", "\ufeff*.tier0.contoso.local"]` + "\n", "guards.protect.computerDnsNames[1]: "},
		{`        machineTags: ["DoNot\u00adOffboard"]` + "\n", "guards.protect.machineTags[0]: "},
		{`        rbacGroups: ["ok", "Tier 0\tservers"]` + "\n", "guards.protect.rbacGroups[1]: "},
	} {
		_, err := Parse([]byte(guards + tc.yaml))
		if err == nil || !strings.Contains(err.Error(), tc.want+"holds a character") {
			t.Errorf("%s: Parse error = %v, want one naming it", tc.yaml, err)
		}
	}
	if _, err := Parse([]byte(guards + `        rbacGroups: ["Serveurs de niveau 0 – Île-de-France"]` + "\n" + `        machineTags: ["DoNotOffboard\n"]` + "\n")); err != nil {
		t.Errorf("a group with letters and a dash beyond ASCII, a tag with a line's end after it: %v", err)
	}
}

// TestGuardJoinersInWords: a zero-width non-joiner or joiner inside a
// word of a script that writes it (Persian, Hindi) or an emoji sequence
// is part of the group's or tag's name as Defender keeps it: the entry is
// taken, and one without it would match no device. The same character
// between ASCII letters, or at an entry's end, is a copy's leftover and
// still refused. Every joiner used to stop the worker.
func TestGuardJoinersInWords(t *testing.T) {
	t.Parallel()
	guards := "tenants:" + okTenant + "    guards:\n      protect:\n"
	for _, entry := range []string{
		"سرورهای\u200cحیاتی",  // Persian: "critical servers", with the non-joiner of its spelling
		"सर्व\u200dर",         // Devanagari: a joiner after the virama
		"👩\u200d💻 admins",     // an emoji sequence
		"🏳\ufe0f\u200d🌈 team", // after a variation selector
	} {
		yaml := `        rbacGroups: ["` + entry + `"]` + "\n" + `        machineTags: ["` + entry + `"]` + "\n"
		if _, err := Parse([]byte(guards + yaml)); err != nil {
			t.Errorf("%q: %v", entry, err)
		}
	}
	for _, entry := range []string{"DoNot\u200cOffboard", "Tier 0\u200d", "\u200dسرورها", "سرور \u200cها"} {
		_, err := Parse([]byte(guards + `        machineTags: ["` + entry + `"]` + "\n"))
		if err == nil || !strings.Contains(err.Error(), "guards.protect.machineTags[0]: holds a character") {
			t.Errorf("%q: Parse error = %v, want one naming it", entry, err)
		}
	}
}

func TestGuardKinds(t *testing.T) {
	t.Parallel()
	week := Duration(7 * 24 * time.Hour)
	for _, tc := range []struct {
		name    string
		g       Guards
		checked []string
		device  bool
	}{
		{"none", Guards{}, nil, false},
		{"machine ids alone need no device read", Guards{Protect: Protect{MachineIDs: []string{"x"}}}, []string{"protect"}, false},
		{"names", Guards{Protect: Protect{ComputerDNSNames: []string{"x"}}}, []string{"protect"}, true},
		{"tags", Guards{Protect: Protect{MachineTags: []string{"x"}}}, []string{"protect"}, true},
		{"groups", Guards{Protect: Protect{RbacGroups: []string{"x"}}}, []string{"protect"}, true},
		{"inactivity alone", Guards{RequireInactiveFor: &week}, []string{"requireInactiveFor"}, true},
	} {
		if got := tc.g.Checked(); !slices.Equal(got, tc.checked) || tc.g.NeedsDevice() != tc.device {
			t.Errorf("%s: Checked() = %q, NeedsDevice() = %v; want %q, %v", tc.name, got, tc.g.NeedsDevice(), tc.checked, tc.device)
		}
	}
}

func TestParseGuardErrors(t *testing.T) {
	t.Parallel()
	guards := "tenants:" + okTenant + "    guards:\n"
	for _, tc := range []struct{ name, yaml, want string }{
		{"bad glob", guards + "      protect:\n        computerDnsNames: [\"dc[0-9.contoso.local\"]\n", `guards.protect.computerDnsNames[0]: not a glob`},
		{"empty glob", guards + "      protect:\n        computerDnsNames: [\"\"]\n", "guards.protect.computerDnsNames[0]"},
		{"short machine id", guards + "      protect:\n        machineIds: [\"1e5bc9d7\"]\n", `guards.protect.machineIds[0]: not a device id`},
		{"machine id not hex", guards + "      protect:\n        machineIds: [\"" + strings.Repeat("g", 40) + "\"]\n", "guards.protect.machineIds[0]"},
		{"empty tag", guards + "      protect:\n        machineTags: [\"ok\", \" \"]\n", "guards.protect.machineTags[1]: empty"},
		{"empty group", guards + "      protect:\n        rbacGroups: [\"\"]\n", "guards.protect.rbacGroups[0]: empty"},
		// Nothing but characters the comparison leaves out: a variation
		// selector, a grapheme joiner, a Hangul filler.
		{"tag of a variation selector", guards + "      protect:\n        machineTags: [\"\ufe0f\"]\n", "guards.protect.machineTags[0]: empty"},
		{"group of a Hangul filler", guards + "      protect:\n        rbacGroups: [\"\u3164\u034f\"]\n", "guards.protect.rbacGroups[0]: empty"},
		{"bad duration", guards + "      requireInactiveFor: 3 months\n", "line 7: tenants[0].guards.requireInactiveFor is not a duration such as 90s, 5m, 1h or 90d"},
		{"bad days", guards + "      requireInactiveFor: 1.5 days\n", "line 7: tenants[0].guards.requireInactiveFor is not a duration"},
		{"negative days", guards + "      requireInactiveFor: -1d\n", "line 7: tenants[0].guards.requireInactiveFor is not a duration"},
		{"negative duration", guards + "      requireInactiveFor: -1h\n", "line 7: tenants[0].guards.requireInactiveFor is not a duration"},
		{"zero", guards + "      requireInactiveFor: 0s\n", "guards.requireInactiveFor must be positive"},
		{"unknown guard", guards + "      protectt:\n        machineTags: [x]\n", "field protectt not found"},
		{"unknown list", guards + "      protect:\n        hostnames: [x]\n", "field hostnames not found"},
		{"not a list", guards + "      protect:\n        machineTags: DoNotOffboard\n", "cannot unmarshal"},
		{"budget without duration", guards + "      budget: \"500\"\n", `guards.budget: a budget is written <count>/<duration>, like 500/24h`},
		{"budget of zero", guards + "      budget: \"0/24h\"\n", "guards.budget: a budget's count must be a positive whole number, like the 500 of 500/24h"},
		{"budget bad duration", guards + "      budget: \"500/day\"\n", "guards.budget: a budget's duration must be a positive Go duration, like the 24h of 500/24h"},
		{"budget under a second", guards + "      budget: \"1/1ns\"\n", "guards.budget: a budget's duration must be at least 1s"},
		{"budget in milliseconds", guards + "      budget: \"5/1ms\"\n", "guards.budget: a budget's duration must be at least 1s"},
		// A key left without a value (a template's variable that expanded
		// to nothing) must not drop its guard.
		{"duration without value", guards + "      requireInactiveFor:\n", "line 7: tenants[0].guards.requireInactiveFor has no value"},
		{"duration null", guards + "      requireInactiveFor: null\n", "tenants[0].guards.requireInactiveFor has no value"},
		{"list without value", guards + "      protect:\n        machineTags:\n", "tenants[0].guards.protect.machineTags has no value"},
		{"protect without value", guards + "      protect: ~\n", "tenants[0].guards.protect has no value"},
		{"guards without value", "tenants:" + okTenant + "    guards:\n", "tenants[0].guards has no value"},
		{"budget without value", guards + "      budget:\n", "tenants[0].guards.budget has no value"},
		{"null list item", guards + "      protect:\n        machineTags: [x, null]\n", "tenants[0].guards.protect.machineTags[1] has no value"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			_, err := Parse([]byte(tc.yaml))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Parse error = %v, want one containing %q", err, tc.want)
			}
		})
	}
}

// TestDurationDays: a duration is a Go duration in which d stands for
// days, as a unit like the others: "1d12h" and "1.5d" were refused as no
// duration, whole days alone taken.
func TestDurationDays(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]time.Duration{
		"90d": 90 * 24 * time.Hour, "0d": 0, "72h": 72 * time.Hour, "1h30m": 90 * time.Minute,
		// Go durations, plus d for days: a unit like the others.
		"1d12h": 36 * time.Hour, "12h1d": 36 * time.Hour, "1.5d": 36 * time.Hour, ".5d": 12 * time.Hour,
		"+1d": 24 * time.Hour, "7d0h": 7 * 24 * time.Hour, "1d1ms": 24*time.Hour + time.Millisecond, "0.1d": 144 * time.Minute,
	} {
		if got, err := parseDuration(in); err != nil || got != want {
			t.Errorf("parseDuration(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	for _, bad := range []string{"d", "1 d", "99999999999d", "100000d", "90", "1dd", "d1", "-1d", "1d-2h", "1d 2h", "1D", "1d2"} {
		if got, err := parseDuration(bad); err == nil {
			t.Errorf("parseDuration(%q) = %v, want an error", bad, got)
		}
	}
	// Too many days is told as such, not as a unit time.ParseDuration
	// does not know.
	for _, long := range []string{"100000d", "99999999999999999999999d", "99999d1d", "50000d50000d", "99999.5d"} {
		if _, err := parseDuration(long); !errors.Is(err, ErrTooManyDays) {
			t.Errorf("parseDuration(%q): %v, want %v", long, err, ErrTooManyDays)
		}
	}
	if got, err := parseDuration("99999d"); err != nil || got != MaxDays*24*time.Hour {
		t.Errorf("parseDuration(99999d) = %v, %v", got, err)
	}
	if got, err := parseDuration("99998d24h"); err != nil || got != MaxDays*24*time.Hour {
		t.Errorf("parseDuration(99998d24h) = %v, %v", got, err)
	}
	// Days and hours past what a duration holds are told as too long.
	if _, err := parseDuration("99999d2562047h"); !errors.Is(err, ErrTooLong) {
		t.Errorf("parseDuration(99999d2562047h): %v, want %v", err, ErrTooLong)
	}
}

// TestDeployExample: the commented tenants file in deploy/ loads, guards
// included.
func TestDeployExample(t *testing.T) {
	t.Parallel()
	f, err := Load("../../deploy/worker.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if got := f.Tenants[0].Guards.Checked(); !slices.Equal(got, []string{GuardProtect, GuardRequireInactiveFor}) {
		t.Errorf("contoso guards: Checked() = %q", got)
	}
}

func TestParseBudget(t *testing.T) {
	t.Parallel()
	f, err := Parse([]byte("tenants:" + okTenant + "    guards:\n      budget: \"500/24h\"\n"))
	if err != nil {
		t.Fatal(err)
	}
	if w := f.Tenants[0].Guards.BudgetWindow; w == nil || w.Count != 500 || w.Length != 24*time.Hour {
		t.Errorf("BudgetWindow = %v, want 500/24h", w)
	}
}

// TestGlobListInOne: a computerDnsNames entry that holds a space or a
// comma (several globs written in one string, as a template joining a
// list writes them) matches no device, whose computerDnsName has neither:
// it would protect nothing without a word. It stops the worker, named by
// its place; it used to be taken.
func TestGlobListInOne(t *testing.T) {
	t.Parallel()
	guards := "tenants:" + okTenant + "    guards:\n      protect:\n"
	for _, glob := range []string{
		"dc*.contoso.local, *.tier0.contoso.local",
		"dc*.contoso.local,*.tier0.contoso.local",
		"dc01 dc02",
		"dc01\u00a0dc02",
	} {
		_, err := Parse([]byte(guards + `        computerDnsNames: ["ok", "` + glob + `"]` + "\n"))
		if err == nil || !strings.Contains(err.Error(), "guards.protect.computerDnsNames[1]: ") {
			t.Errorf("%q: Parse error = %v, want one naming it", glob, err)
		}
	}
	if _, err := Parse([]byte(guards + `        computerDnsNames: ["dc_01.contoso.local", "sql-[0-9]*.tier0.contoso.local", "\\*odd"]` + "\n")); err != nil {
		t.Errorf("globs of DNS names: %v", err)
	}
}

// TestGlobWithoutAName: a computerDnsNames glob with an empty label (a
// leading dot, as a DNS suffix is written: ".tier0.contoso.local" for
// "*.tier0.contoso.local"; two dots in a row; two final dots) or a slash
// matches no device, whose computerDnsName has neither: it would protect
// nothing without a word. It stops the worker, named by its place; it
// used to be taken.
func TestGlobWithoutAName(t *testing.T) {
	t.Parallel()
	guards := "tenants:" + okTenant + "    guards:\n      protect:\n"
	for _, glob := range []string{
		".tier0.contoso.local",
		"dc01..contoso.local",
		"dc01.contoso.local..",
		"dc01/contoso.local",
		"contoso.local/dc*",
	} {
		_, err := Parse([]byte(guards + `        computerDnsNames: ["ok", "` + glob + `"]` + "\n"))
		if err == nil || !strings.Contains(err.Error(), "guards.protect.computerDnsNames[1]: ") {
			t.Errorf("%q: Parse error = %v, want one naming it", glob, err)
		}
	}
	if _, err := Parse([]byte(guards + `        computerDnsNames: ["*", "dc01.", "*.tier0.contoso.local.", "dc[._]01", "\\.x"]` + "\n")); err != nil {
		t.Errorf("globs of DNS names: %v", err)
	}
}

// TestGlobEscapedLetter: a computerDnsNames glob with a backslash before
// a letter or a digit, which path.Match reads as that letter or digit
// alone, is a host name written as a Windows account domain writes it
// (CONTOSO\DC01, a glob of "contosodc01") or a regular expression's
// class (dc\d\d, a glob of "dcdd"): it matches no device that was meant,
// and would protect nothing without a word. It stops the worker, named by
// its place; it used to be taken. A backslash before a wildcard or a dot
// still escapes it.
func TestGlobEscapedLetter(t *testing.T) {
	t.Parallel()
	guards := "tenants:" + okTenant + "    guards:\n      protect:\n"
	for _, glob := range []string{
		`CONTOSO\\DC01`,
		`contoso\\dc*`,
		`dc\\d\\d.contoso.local`,
		`sql\\01`,
		`dc[\\d]`,
	} {
		_, err := Parse([]byte(guards + `        computerDnsNames: ["ok", "` + glob + `"]` + "\n"))
		if err == nil || !strings.Contains(err.Error(), "guards.protect.computerDnsNames[1]: holds a backslash before a letter or a digit") {
			t.Errorf("%s: Parse error = %v, want one naming it", glob, err)
		}
	}
	if _, err := Parse([]byte(guards + `        computerDnsNames: ["\\*odd", "dc01\\.contoso\\.local", "x\\?", "[a\\-z]*"]` + "\n")); err != nil {
		t.Errorf("escaped wildcards and dots: %v", err)
	}
}

// TestGlobCompatibleForms: a glob written with a decomposed accent (as
// macOS writes it) or in full-width letters (as an East Asian input
// method does) is matched as the letters it spells, as the device's name
// is (NFKC). It used to be kept as written, and matched no name the API
// gives composed, or in punycode: the device passed.
func TestGlobCompatibleForms(t *testing.T) {
	t.Parallel()
	f, err := Parse([]byte("tenants:" + okTenant + `    guards:
      protect:
        computerDnsNames: ["Bu\u0308cher*", "\uff24\uff23*.contoso.local", "ok"]
`))
	if err != nil {
		t.Fatal(err)
	}
	if got := f.Tenants[0].Guards.Protect.ComputerDNSNames; !slices.Equal(got, []string{"b\u00fccher*", "dc*.contoso.local", "ok"}) {
		t.Errorf("computerDnsNames = %q, want them composed and in letters of the usual width", got)
	}
}

// TestGuardBudgetEmpty: a budget written as an empty string (a template's
// variable that expanded to nothing: budget: "{{ .budget }}") stops the
// worker, as a budget without a value does. It used to be read as no
// budget, and the tenant's cap was dropped without a word.
func TestGuardBudgetEmpty(t *testing.T) {
	t.Parallel()
	for name, budget := range map[string]string{"quoted": `""`, "single quoted": `''`, "anchored": `&b ""`} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			_, err := Parse([]byte("tenants:" + okTenant + "    guards:\n      budget: " + budget + "\n"))
			if err == nil || !strings.Contains(err.Error(), "line 7: tenants[0].guards.budget is empty") {
				t.Fatalf("Parse error = %v, want one naming tenants[0].guards.budget", err)
			}
		})
	}
	t.Run("aliased", func(t *testing.T) {
		t.Parallel()
		_, err := Parse([]byte("tenants:" + okTenant + "    comment: &b \"\"\n    guards:\n      budget: *b\n"))
		if err == nil || !strings.Contains(err.Error(), "guards.budget is empty") {
			t.Fatalf("Parse error = %v, want one naming tenants[0].guards.budget", err)
		}
	})
	t.Run("merged", func(t *testing.T) {
		t.Parallel()
		_, err := Parse([]byte("tenants:" + okTenant + "    guards:\n      <<: {budget: \"\"}\n"))
		if err == nil || !strings.Contains(err.Error(), "guards.<<.budget is empty") {
			t.Fatalf("Parse error = %v, want one naming tenants[0].guards.<<.budget", err)
		}
	})
}

// TestGlobRangeBackwards: a computerDnsNames glob with a range written
// from its last character to its first (dc0[9-1], dc[z-a]*) matches no
// character, and so no device: path.Match takes it without an error. It
// stops the worker, named by its place; it used to be taken, and the
// guard protected nothing without a word. A range of one character, and
// ranges written in order, are taken.
func TestGlobRangeBackwards(t *testing.T) {
	t.Parallel()
	guards := "tenants:" + okTenant + "    guards:\n      protect:\n"
	for _, glob := range []string{`dc0[9-1].contoso.local`, `dc[z-a]*`, `sql[^9-0]*`, `dc[a-c5-1]`, `x[\\.-\\-]`, `DC[Z-A]*`} {
		_, err := Parse([]byte(guards + `        computerDnsNames: ["ok", "` + glob + `"]` + "\n"))
		if err == nil || !strings.Contains(err.Error(), "guards.protect.computerDnsNames[1]: holds a range written backwards") {
			t.Errorf("%s: Parse error = %v, want one naming it", glob, err)
		}
	}
	if _, err := Parse([]byte(guards + `        computerDnsNames: ["dc0[1-9]*", "dc[a-a]", "[^0-9]*", "x[\\--\\.]", "[A-Z]*.tier0.contoso.local"]` + "\n")); err != nil {
		t.Errorf("ranges in order: %v", err)
	}
}

// TestGlobShellNegation: a computerDnsNames glob whose class starts with
// "!" (dc[!0-9]*), a shell's way to write "any character but these", is
// in path.Match a class of "!" and those characters: it protects dc0 to
// dc9, the devices meant to be left out, and not the others meant. No
// computerDnsName holds "!", so the class is the shell's: it stops the
// worker, named by its place, with path.Match's way to write it ([^0-9]).
// It used to be taken. An escaped "!" is taken as itself.
func TestGlobShellNegation(t *testing.T) {
	t.Parallel()
	guards := "tenants:" + okTenant + "    guards:\n      protect:\n"
	for _, glob := range []string{`dc[!0-9]*`, `*.tier[!0].contoso.local`, `x[a-c][!a]`} {
		_, err := Parse([]byte(guards + `        computerDnsNames: ["ok", "` + glob + `"]` + "\n"))
		if err == nil || !strings.Contains(err.Error(), "guards.protect.computerDnsNames[1]: holds a class starting with !") {
			t.Errorf("%s: Parse error = %v, want one naming it", glob, err)
		}
	}
	if _, err := Parse([]byte(guards + `        computerDnsNames: ["dc[^0-9]*", "x[\\!a]", "[a!]*"]` + "\n")); err != nil {
		t.Errorf("a class with ^, or ! escaped or not first: %v", err)
	}
}
