package worker

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/jonboulle/clockwork"
	"go.uber.org/zap"

	"github.com/contoso-secops/mde-offboard/internal/config"
	"github.com/contoso-secops/mde-offboard/internal/mde"
	"github.com/contoso-secops/mde-offboard/offboard"
)

// TestRefusal: each rule refuses what it names, case-insensitively; the
// first matching rule in the contract's order is the one named.
func TestRefusal(t *testing.T) {
	t.Parallel()
	const id = "1e5bc9d7e413ddd7902c2932e418702b84d0cc07"
	now := time.Date(2026, 11, 24, 10, 0, 0, 0, time.UTC)
	week := config.Duration(7 * 24 * time.Hour)
	all := config.Guards{
		Protect: config.Protect{
			MachineIDs:       []string{"ffffffffffffffffffffffffffffffffffffffff"},
			ComputerDNSNames: []string{"dc*.contoso.local", "*.tier0.contoso.local"},
			MachineTags:      []string{"DoNotOffboard"},
			RbacGroups:       []string{"Tier 0 servers"},
		},
		RequireInactiveFor: &week,
	}
	old := now.Add(-30 * 24 * time.Hour).Format(time.RFC3339)
	plain := mde.Machine{ID: id, ComputerDNSName: "pc-1.contoso.local", LastSeen: old, MachineTags: []string{"retired"}, RbacGroupName: "Workstations"}
	with := func(f func(m *mde.Machine)) *mde.Machine { m := plain; f(&m); return &m }

	for _, tc := range []struct {
		name   string
		id     string
		m      *mde.Machine
		rule   string
		whyHas string
		guards *config.Guards
	}{
		{name: "unprotected and inactive", m: &plain},
		{name: "listed id, upper case", id: strings.ToUpper("ffffffffffffffffffffffffffffffffffffffff"), rule: offboard.RuleMachineIDs, whyHas: "is listed"},
		{name: "listed id needs no device", id: "ffffffffffffffffffffffffffffffffffffffff", m: nil, rule: offboard.RuleMachineIDs},
		{name: "name glob", m: with(func(m *mde.Machine) { m.ComputerDNSName = "DC01.Contoso.Local" }), rule: offboard.RuleComputerDNSNames, whyHas: `"DC01.Contoso.Local" matches "dc*.contoso.local"`},
		{name: "name glob, root dot", m: with(func(m *mde.Machine) { m.ComputerDNSName = "sql1.tier0.contoso.local." }), rule: offboard.RuleComputerDNSNames},
		{name: "glob does not cross a label by accident", m: with(func(m *mde.Machine) { m.ComputerDNSName = "xdc01.contoso.local" })},
		{name: "tag", m: with(func(m *mde.Machine) { m.MachineTags = []string{"x", "donotoffboard"} }), rule: offboard.RuleMachineTags, whyHas: `tagged "donotoffboard"`},
		{name: "group", m: with(func(m *mde.Machine) { m.RbacGroupName = "TIER 0 SERVERS" }), rule: offboard.RuleRbacGroups, whyHas: `"TIER 0 SERVERS"`},
		{name: "seen a day ago", m: with(func(m *mde.Machine) { m.LastSeen = now.Add(-24 * time.Hour).Format(time.RFC3339Nano) }), rule: offboard.RuleRequireInactiveFor, whyHas: "saw the device 1d ago"},
		{name: "seen exactly the setting ago", m: with(func(m *mde.Machine) { m.LastSeen = now.Add(-7 * 24 * time.Hour).Format(time.RFC3339) })},
		{name: "lastSeen without zone", m: with(func(m *mde.Machine) { m.LastSeen = "2026-11-23T10:00:00.1234567" }), rule: offboard.RuleRequireInactiveFor},
		{name: "no lastSeen", m: with(func(m *mde.Machine) { m.LastSeen = "" }), rule: offboard.RuleRequireInactiveFor, whyHas: "no lastSeen"},
		{name: "unreadable lastSeen", m: with(func(m *mde.Machine) { m.LastSeen = "yesterday\n" }), rule: offboard.RuleRequireInactiveFor, whyHas: `"yesterday\n" is not a time`},
		{name: ".NET's placeholder for no lastSeen", m: with(func(m *mde.Machine) { m.LastSeen = "0001-01-01T00:00:00Z" }), rule: offboard.RuleRequireInactiveFor, whyHas: "placeholder"},
		{name: "Unix's placeholder for no lastSeen", m: with(func(m *mde.Machine) { m.LastSeen = "1970-01-01T00:00:00Z" }), rule: offboard.RuleRequireInactiveFor, whyHas: "placeholder"},
		{name: "lastSeen in the future", m: with(func(m *mde.Machine) { m.LastSeen = now.Add(time.Hour).Format(time.RFC3339) }), rule: offboard.RuleRequireInactiveFor, whyHas: "future"},
		{name: "first rule wins", id: "ffffffffffffffffffffffffffffffffffffffff", m: with(func(m *mde.Machine) {
			m.ComputerDNSName, m.MachineTags, m.RbacGroupName, m.LastSeen = "dc1.contoso.local", []string{"DoNotOffboard"}, "Tier 0 servers", ""
		}), rule: offboard.RuleMachineIDs},
		{name: "name before tag", m: with(func(m *mde.Machine) {
			m.ComputerDNSName, m.MachineTags = "dc1.contoso.local", []string{"DoNotOffboard"}
		}), rule: offboard.RuleComputerDNSNames},
		{name: "tag before group", m: with(func(m *mde.Machine) { m.MachineTags, m.RbacGroupName = []string{"DoNotOffboard"}, "Tier 0 servers" }), rule: offboard.RuleMachineTags},
		{name: "group before inactivity", m: with(func(m *mde.Machine) { m.RbacGroupName, m.LastSeen = "Tier 0 servers", "" }), rule: offboard.RuleRbacGroups},
		{name: "no inactivity guard: a fresh device passes", m: with(func(m *mde.Machine) { m.LastSeen = now.Format(time.RFC3339) }), guards: &config.Guards{Protect: config.Protect{MachineTags: []string{"DoNotOffboard"}}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			g := &all
			if tc.guards != nil {
				g = tc.guards
			}
			devID := id
			if tc.id != "" {
				devID = tc.id
			}
			rule, why := refusal(g, devID, tc.m, now)
			if rule != tc.rule || !strings.Contains(why, tc.whyHas) {
				t.Errorf("refusal = %q, %q; want %q with %q", rule, why, tc.rule, tc.whyHas)
			}
		})
	}
}

func TestDays(t *testing.T) {
	t.Parallel()
	for d, want := range map[time.Duration]string{90 * 24 * time.Hour: "90d", 72 * time.Hour: "3d", 36 * time.Hour: "36h0m0s", time.Minute: "1m0s"} {
		if got := days(d); got != want {
			t.Errorf("days(%v) = %q, want %q", d, got, want)
		}
	}
}

// TestPolicyLastSeen: a result's policy.lastSeen is an RFC 3339 time in
// UTC, as the result schema has it (format date-time), whatever form of
// time the API gave: Defender's seven fractional digits stay as they are,
// a time without a zone (which the API has been seen to answer, and the
// guard reads as UTC) gets one, and a lastSeen that is no time is left
// out (the refusal's message quotes it). It used to be copied as the API
// gave it.
func TestPolicyLastSeen(t *testing.T) {
	t.Parallel()
	const id = "1e5bc9d7e413ddd7902c2932e418702b84d0cc07"
	now := time.Date(2026, 11, 24, 10, 0, 0, 0, time.UTC)
	w := &Worker{clock: clockwork.NewFakeClockAt(now)}
	day := config.Duration(24 * time.Hour)
	j := &job{t: &tenantRun{Tenant: &Tenant{Config: &config.Tenant{Guards: config.Guards{RequireInactiveFor: &day}}}}, log: zap.NewNop()}
	for lastSeen, want := range map[string]string{
		"2026-11-20T02:37:24.8112783Z": "2026-11-20T02:37:24.8112783Z",
		"2026-11-20T02:37:24.8112783":  "2026-11-20T02:37:24.8112783Z",
		"2026-11-20T03:37:24+01:00":    "2026-11-20T02:37:24Z",
		"yesterday":                    "",
		"":                             "",
	} {
		dev := device{id: id, machine: &mde.Machine{ID: id, LastSeen: lastSeen}}
		pol, _, _, res, err := w.judge(t.Context(), j, &dev)
		if err != nil || res != nil || pol == nil {
			t.Fatalf("lastSeen %q: policy %+v, result %+v, error %v", lastSeen, pol, res, err)
		}
		if pol.LastSeen != want {
			t.Errorf("lastSeen %q: policy.lastSeen %q, want %q", lastSeen, pol.LastSeen, want)
		}
	}
}

// TestGuardSpaces: a tag or a device group matches whatever white space
// stands between its words, in the tenants file or in Defender: a
// no-break space, which a copy from a web page, a chat or a word
// processor puts for a space, one that does not break a line, two spaces
// for one. Seen alike, they used to match no device, and the guard
// protected nothing without a word.
func TestGuardSpaces(t *testing.T) {
	t.Parallel()
	const id = "1e5bc9d7e413ddd7902c2932e418702b84d0cc07"
	now := time.Date(2026, 11, 24, 10, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		name, listed, has string
	}{
		{"no-break spaces in the file", "Tier\u00a00\u00a0servers", "Tier 0 servers"},
		{"no-break space in Defender", "Tier 0 servers", "Tier 0\u00a0servers"},
		{"narrow no-break space", "Tier\u202f0 servers", "Tier 0 servers"},
		{"ideographic space", "Tier\u30000 servers", "Tier 0 servers"},
		{"two spaces for one", "Tier  0 servers", "Tier 0 servers"},
		{"a line separator", "Tier 0\u2028servers", "Tier 0 servers"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			tags := &config.Guards{Protect: config.Protect{MachineTags: []string{tc.listed}}}
			m := &mde.Machine{ID: id, MachineTags: []string{tc.has}}
			if rule, _ := refusal(tags, id, m, now); rule != offboard.RuleMachineTags {
				t.Errorf("tag %q listed as %q: rule %q, want %s", tc.has, tc.listed, rule, offboard.RuleMachineTags)
			}
			groups := &config.Guards{Protect: config.Protect{RbacGroups: []string{tc.listed}}}
			m = &mde.Machine{ID: id, RbacGroupName: tc.has}
			if rule, _ := refusal(groups, id, m, now); rule != offboard.RuleRbacGroups {
				t.Errorf("group %q listed as %q: rule %q, want %s", tc.has, tc.listed, rule, offboard.RuleRbacGroups)
			}
		})
	}
	// Words stay words: a space does not stand for nothing.
	g := &config.Guards{Protect: config.Protect{MachineTags: []string{"Do Not Offboard"}}}
	if rule, _ := refusal(g, id, &mde.Machine{ID: id, MachineTags: []string{"DoNotOffboard"}}, now); rule != "" {
		t.Errorf("%q matches %q", "Do Not Offboard", "DoNotOffboard")
	}
}

// TestGuardHostNameWithoutDomain: a glob without a dot names hosts
// whatever their domain: "dc01" protects the device Defender names
// dc01.contoso.local (a domain member), as well as a dc01 in no domain. It
// used to be matched against the whole name only, and so protected none
// of a domain's devices. A glob with a dot still matches the whole name.
func TestGuardHostNameWithoutDomain(t *testing.T) {
	t.Parallel()
	const id = "1e5bc9d7e413ddd7902c2932e418702b84d0cc07"
	now := time.Date(2026, 11, 24, 10, 0, 0, 0, time.UTC)
	g := &config.Guards{Protect: config.Protect{ComputerDNSNames: []string{"dc01", "sql-?", "web*.dmz.contoso.local"}}}
	for name, want := range map[string]string{
		"DC01.contoso.local":     offboard.RuleComputerDNSNames,
		"dc01":                   offboard.RuleComputerDNSNames,
		"dc01.":                  offboard.RuleComputerDNSNames,
		"dc01.eu.contoso.local.": offboard.RuleComputerDNSNames,
		"sql-1.contoso.local":    offboard.RuleComputerDNSNames,
		"web1.dmz.contoso.local": offboard.RuleComputerDNSNames,
		"dc011.contoso.local":    "",
		"pc-dc01.contoso.local":  "",
		"sql-12.contoso.local":   "",
		"web1":                   "",
		"web1.contoso.local":     "",
		"contoso.dc01.example":   "",
		"":                       offboard.RuleComputerDNSNames, // no name to tell apart: TestGuardDeviceWithoutAName
	} {
		m := &mde.Machine{ID: id, ComputerDNSName: name}
		if rule, _ := refusal(g, id, m, now); rule != want {
			t.Errorf("computerDnsName %q: rule %q, want %q", name, rule, want)
		}
	}
}

// TestGuardCompatibleCharacters: a tag or a device group matches however
// its letters are encoded, as long as they read the same: an accented
// letter written as one character or as a letter and a combining accent
// (as macOS writes names), letters typed in full width (an East Asian
// input method), a ligature. Each used to match no device.
func TestGuardCompatibleCharacters(t *testing.T) {
	t.Parallel()
	const id = "1e5bc9d7e413ddd7902c2932e418702b84d0cc07"
	now := time.Date(2026, 11, 24, 10, 0, 0, 0, time.UTC)
	for _, tc := range []struct{ name, listed, has string }{
		{"decomposed accent in the file", "Serveurs I\u0302le-de-France", "Serveurs \u00cele-de-France"},
		{"decomposed accent in Defender", "Serveurs \u00cele-de-France", "Serveurs I\u0302le-de-France"},
		{"full width", "\uff24\uff4f\uff2e\uff4f\uff54\uff2f\uff46\uff46\uff42\uff4f\uff41\uff52\uff44", "DoNotOffboard"},
		{"ligature", "Con\ufb01dential", "Confidential"},
		// A Turkish keyboard's I and i: caps lock on, or the guard
		// written there.
		{"dotted capital I on the device", "Critical", "CR\u0130T\u0130CAL"},
		{"dotless i on the device", "Critical", "cr\u0131t\u0131cal"},
		{"dotted capital I in the file", "\u0130stanbul servers", "istanbul servers"},
		// A dash other than the hyphen-minus: pasted from a word
		// processor (which writes " - " as an en dash, and keeps a
		// non-breaking hyphen), or a minus sign.
		{"non-breaking hyphen on the device", "Tier-0", "Tier\u20110"},
		{"hyphen on the device", "Tier-0", "Tier\u20100"},
		{"en dash on the device", "Tier - 0", "Tier \u2013 0"},
		{"em dash in the file", "Tier\u20140", "Tier-0"},
		{"minus sign on the device", "Tier-0", "Tier\u22120"},
		{"small hyphen-minus on the device", "Tier-0", "Tier\ufe630"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			tags := &config.Guards{Protect: config.Protect{MachineTags: []string{tc.listed}}}
			if rule, _ := refusal(tags, id, &mde.Machine{ID: id, MachineTags: []string{tc.has}}, now); rule != offboard.RuleMachineTags {
				t.Errorf("tag %q listed as %q: rule %q, want %s", tc.has, tc.listed, rule, offboard.RuleMachineTags)
			}
			groups := &config.Guards{Protect: config.Protect{RbacGroups: []string{tc.listed}}}
			if rule, _ := refusal(groups, id, &mde.Machine{ID: id, RbacGroupName: tc.has}, now); rule != offboard.RuleRbacGroups {
				t.Errorf("group %q listed as %q: rule %q, want %s", tc.has, tc.listed, rule, offboard.RuleRbacGroups)
			}
		})
	}
}

// TestGuardGroupWithoutName: a device the API places in a device group
// (rbacGroupId) without naming the group (rbacGroupName null, missing or
// blank) may be in one of the protected groups: protect.rbacGroups
// refuses it, as requireInactiveFor refuses a device without a lastSeen.
// It used to pass, and be offboarded. A device in no group (id 0)
// passes.
func TestGuardGroupWithoutName(t *testing.T) {
	t.Parallel()
	const id = "1e5bc9d7e413ddd7902c2932e418702b84d0cc07"
	now := time.Date(2026, 11, 24, 10, 0, 0, 0, time.UTC)
	g := &config.Guards{Protect: config.Protect{RbacGroups: []string{"Tier 0 servers"}}}
	for _, tc := range []struct {
		name, body, rule string
	}{
		{"named group id, name null", `{"id":"` + id + `","rbacGroupId":7,"rbacGroupName":null}`, offboard.RuleRbacGroups},
		{"named group id, name missing", `{"id":"` + id + `","rbacGroupId":7}`, offboard.RuleRbacGroups},
		{"named group id, name blank", `{"id":"` + id + `","rbacGroupId":7,"rbacGroupName":" "}`, offboard.RuleRbacGroups},
		{"group id as a string", `{"id":"` + id + `","rbacGroupId":"7"}`, offboard.RuleRbacGroups},
		{"another group, named", `{"id":"` + id + `","rbacGroupId":7,"rbacGroupName":"Workstations"}`, ""},
		{"no group", `{"id":"` + id + `","rbacGroupId":0,"rbacGroupName":null}`, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			if rule, why := refusalOfRecord(t, g, id, tc.body, now, tc.rule); rule != "" && !strings.Contains(why, "7") {
				t.Errorf("why %q does not give the group id", why)
			}
		})
	}
	// Without a group guard, the group does not matter.
	m := &mde.Machine{ID: id, RbacGroupID: "7", MachineTags: []string{}}
	if rule, _ := refusal(&config.Guards{Protect: config.Protect{MachineTags: []string{"x"}}}, id, m, now); rule != "" {
		t.Errorf("rule %q without a group guard", rule)
	}
}

// TestGuardGroupUnknown: a device the API gives neither a device group
// name nor a group id (null or missing) may be in a protected group as
// well: nothing says it is in none, which an id of 0 says. With group
// guards set it is refused, as a device without a computerDnsName is
// under the name globs. It used to pass, and be offboarded.
func TestGuardGroupUnknown(t *testing.T) {
	t.Parallel()
	const id = "1e5bc9d7e413ddd7902c2932e418702b84d0cc07"
	now := time.Date(2026, 11, 24, 10, 0, 0, 0, time.UTC)
	g := &config.Guards{Protect: config.Protect{RbacGroups: []string{"Tier 0 servers"}}}
	for _, tc := range []struct {
		name, body, rule string
	}{
		{"group id null", `{"id":"` + id + `","rbacGroupId":null}`, offboard.RuleRbacGroups},
		{"group id and name null", `{"id":"` + id + `","rbacGroupId":null,"rbacGroupName":null}`, offboard.RuleRbacGroups},
		{"group id null, name blank", `{"id":"` + id + `","rbacGroupId":null,"rbacGroupName":" "}`, offboard.RuleRbacGroups},
		{"nothing said of groups", `{"id":"` + id + `"}`, offboard.RuleRbacGroups},
		{"no group", `{"id":"` + id + `","rbacGroupId":0}`, ""},
		{"group id null, another group named", `{"id":"` + id + `","rbacGroupId":null,"rbacGroupName":"Workstations"}`, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			if rule, why := refusalOfRecord(t, g, id, tc.body, now, tc.rule); rule != "" && !strings.Contains(why, "no device group") {
				t.Errorf("why %q does not say the API gives no group", why)
			}
		})
	}
	if rule, _ := refusal(&config.Guards{Protect: config.Protect{MachineTags: []string{"x"}}}, id, &mde.Machine{ID: id, MachineTags: []string{}}, now); rule != "" {
		t.Errorf("rule %q without a group guard", rule)
	}
}

// TestGuardTagsUnknown: a device whose record gives no machineTags (null
// or missing) may carry a protected tag: nothing tells it from a tagged
// one, which an empty list does. With tag guards set it is refused, as a
// device without a computerDnsName is under the name globs and one
// without a device group under the group guards. It used to pass, and be
// offboarded.
func TestGuardTagsUnknown(t *testing.T) {
	t.Parallel()
	const id = "1e5bc9d7e413ddd7902c2932e418702b84d0cc07"
	now := time.Date(2026, 11, 24, 10, 0, 0, 0, time.UTC)
	g := &config.Guards{Protect: config.Protect{MachineTags: []string{"DoNotOffboard"}}}
	for _, tc := range []struct {
		name, body, rule string
	}{
		{"tags null", `{"id":"` + id + `","machineTags":null}`, offboard.RuleMachineTags},
		{"tags missing", `{"id":"` + id + `"}`, offboard.RuleMachineTags},
		{"no tags", `{"id":"` + id + `","machineTags":[]}`, ""},
		{"other tags", `{"id":"` + id + `","machineTags":["retired",null]}`, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			if rule, why := refusalOfRecord(t, g, id, tc.body, now, tc.rule); rule != "" && !strings.Contains(why, "no machineTags") {
				t.Errorf("why %q does not say the API gives no tags", why)
			}
		})
	}
	// Without a tag guard, the tags do not matter.
	if rule, _ := refusal(&config.Guards{Protect: config.Protect{ComputerDNSNames: []string{"dc*"}}}, id, &mde.Machine{ID: id, ComputerDNSName: "pc-1"}, now); rule != "" {
		t.Errorf("rule %q without a tag guard", rule)
	}
}

// TestGuardDeviceWithoutAName: a device the API gives no computerDnsName
// (null, missing or blank) cannot be told apart from a protected name:
// with host name globs set it is refused under that rule, as a missing
// lastSeen is under requireInactiveFor. Without globs, the name does not
// matter.
func TestGuardDeviceWithoutAName(t *testing.T) {
	t.Parallel()
	const id = "1e5bc9d7e413ddd7902c2932e418702b84d0cc07"
	now := time.Date(2026, 11, 24, 10, 0, 0, 0, time.UTC)
	g := &config.Guards{Protect: config.Protect{ComputerDNSNames: []string{"dc*.contoso.local"}}}
	for _, tc := range []struct {
		name, body, rule string
	}{
		{"name null", `{"id":"` + id + `","computerDnsName":null}`, offboard.RuleComputerDNSNames},
		{"name missing", `{"id":"` + id + `"}`, offboard.RuleComputerDNSNames},
		{"name blank", `{"id":"` + id + `","computerDnsName":" "}`, offboard.RuleComputerDNSNames},
		{"a root dot alone", `{"id":"` + id + `","computerDnsName":"."}`, offboard.RuleComputerDNSNames},
		{"another name", `{"id":"` + id + `","computerDnsName":"ws01.contoso.local"}`, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			refusalOfRecord(t, g, id, tc.body, now, tc.rule)
		})
	}
	m := &mde.Machine{ID: id, MachineTags: []string{}}
	if rule, _ := refusal(&config.Guards{Protect: config.Protect{MachineTags: []string{"x"}}}, id, m, now); rule != "" {
		t.Errorf("rule %q without a name guard", rule)
	}
}

// refusalOfRecord is the rule and reason g refuses the device the API
// answered body for, which must be want ("" none).
func refusalOfRecord(t *testing.T, g *config.Guards, id, body string, now time.Time, want string) (rule, why string) {
	t.Helper()
	m, err := mde.ParseMachine([]byte(body))
	if err != nil {
		t.Fatal(err)
	}
	rule, why = refusal(g, id, &m, now)
	if rule != want {
		t.Errorf("rule %q (%s), want %q", rule, why, want)
	}
	return rule, why
}

// TestGuardNameAsWritten: a computerDnsName the API gives with white
// space around it, more than one final dot, or letters in a compatibility
// form (full width) is matched against the globs as the name it spells:
// each used to match no glob, and the device was offboarded.
func TestGuardNameAsWritten(t *testing.T) {
	t.Parallel()
	checkNames(t, []string{"dc*.contoso.local", "sql01"}, []nameCase{
		{"space before", " dc01.contoso.local", offboard.RuleComputerDNSNames},
		{"space after", "DC01.contoso.local ", offboard.RuleComputerDNSNames},
		{"tab and no-break space", "\tdc01.contoso.local\u00a0", offboard.RuleComputerDNSNames},
		{"two final dots", "dc01.contoso.local..", offboard.RuleComputerDNSNames},
		{"dot then space", "dc01.contoso.local. ", offboard.RuleComputerDNSNames},
		{"full width", "\uff24\uff23\uff10\uff11.contoso.local", offboard.RuleComputerDNSNames},
		{"host glob, space after the host", "sql01 ", offboard.RuleComputerDNSNames},
		{"control character after the host", "sql01\u0000", offboard.RuleComputerDNSNames},
		{"zero-width space inside", "dc\u200b01.contoso.local", offboard.RuleComputerDNSNames},
		{"soft hyphen inside", "dc0\u00ad1.contoso.local", offboard.RuleComputerDNSNames},
		{"another host", " ws01.contoso.local ", ""},
		{"another host, hidden characters", "ws\u200b01.contoso.local\u0000", ""},
	})
}

// TestGuardHiddenCharactersOnTheDevice: a tag or a device group name the
// API gives with a character one does not see in it (a zero-width space,
// a byte order mark, a soft hyphen, a control character: left by a copy
// from a web page or a chat into the portal) is the tag or group it
// reads as: each used to match no guard, and the device was offboarded.
func TestGuardHiddenCharactersOnTheDevice(t *testing.T) {
	t.Parallel()
	const id = "1e5bc9d7e413ddd7902c2932e418702b84d0cc07"
	now := time.Date(2026, 11, 24, 10, 0, 0, 0, time.UTC)
	g := &config.Guards{Protect: config.Protect{MachineTags: []string{"DoNotOffboard"}, RbacGroups: []string{"Tier 0 servers"}}}
	for _, tc := range []struct {
		name, members, rule string
	}{
		{"zero-width space after the tag", `"machineTags":["DoNotOffboard\u200b"],"rbacGroupId":0`, offboard.RuleMachineTags},
		{"byte order mark before the tag", `"machineTags":["\ufeffDoNotOffboard"],"rbacGroupId":0`, offboard.RuleMachineTags},
		{"soft hyphen inside the tag", `"machineTags":["DoNot\u00adOffboard"],"rbacGroupId":0`, offboard.RuleMachineTags},
		{"control character after the tag", `"machineTags":["DoNotOffboard\u0000"],"rbacGroupId":0`, offboard.RuleMachineTags},
		// Characters Unicode says to ignore when not rendered, outside
		// the format characters: a combining grapheme joiner, a
		// variation selector, a Hangul filler.
		{"grapheme joiner inside the tag", `"machineTags":["DoNot\u034fOffboard"],"rbacGroupId":0`, offboard.RuleMachineTags},
		{"variation selector after the tag", `"machineTags":["DoNotOffboard\ufe0f"],"rbacGroupId":0`, offboard.RuleMachineTags},
		{"Hangul filler in the group", `"machineTags":[],"rbacGroupId":7,"rbacGroupName":"Tier 0\u3164 servers"`, offboard.RuleRbacGroups},
		{"zero-width space in the group", `"machineTags":[],"rbacGroupId":7,"rbacGroupName":"Tier 0\u200b servers"`, offboard.RuleRbacGroups},
		{"another tag", `"machineTags":["Do\u200bNot"],"rbacGroupId":0`, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			body := `{"id":"` + id + `",` + tc.members + `}`
			refusalOfRecord(t, g, id, body, now, tc.rule)
		})
	}
}

// TestGuardInternationalNames: a glob written with letters beyond ASCII
// matches the device's name as the API may give it in the DNS's ASCII
// form (punycode, xn--), and a glob written in that form matches the name
// given in letters: both are one name. Either used to match nothing, and
// the device was offboarded.
func TestGuardInternationalNames(t *testing.T) {
	t.Parallel()
	checkNames(t, []string{"bücher*.contoso.local", "xn--mnchen-3ya.contoso.local"}, []nameCase{
		{"letters as the glob", "Bücher01.contoso.local", offboard.RuleComputerDNSNames},
		{"punycode of a letters glob", "xn--bcher01-n2a.contoso.local", offboard.RuleComputerDNSNames},
		{"punycode, upper case", "XN--BCHER01-N2A.CONTOSO.LOCAL", offboard.RuleComputerDNSNames},
		{"letters of a punycode glob", "MÜNCHEN.contoso.local", offboard.RuleComputerDNSNames},
		{"an underscore and punycode", "xn--bcher_1-n2a.contoso.local", offboard.RuleComputerDNSNames},
		{"another name", "xn--mnchen-3ya.fabrikam.local", ""},
	})
}

// TestGuardInternationalNameWithAnOddLabel: a name whose host label is
// international but another label is no valid international label (a
// hyphen at its start or end, punycode that decodes to nothing, a joiner
// in it) still has its host label matched in both forms. Such a label
// used to keep the whole name from being converted, and the device
// passed a glob written the other way.
func TestGuardInternationalNameWithAnOddLabel(t *testing.T) {
	t.Parallel()
	checkNames(t, []string{"bücher*", "xn--mnchen-3ya"}, []nameCase{
		{"punycode host, invalid punycode label", "xn--bcher01-n2a.xn--zz.local", offboard.RuleComputerDNSNames},
		{"punycode host, label ending in a hyphen", "xn--bcher01-n2a.corp-.local", offboard.RuleComputerDNSNames},
		{"letters host, label ending in a hyphen", "München.corp-.local", offboard.RuleComputerDNSNames},
		{"letters host, joiner in a label", "münchen.a\u200db.local", offboard.RuleComputerDNSNames},
		{"another host, odd label", "ws01.corp-.local", ""},
	})
}

// TestGuardLongLabelIsQuick: a device name with a label far longer than
// any DNS label, of many distinct letters, is matched in little time;
// its punycode took time growing with the square of its length (seconds
// for a name of 60 kB, minutes for one as long as an answer may be),
// while the job waited. Its other labels are still matched in both
// forms.
func TestGuardLongLabelIsQuick(t *testing.T) {
	t.Parallel()
	const id = "1e5bc9d7e413ddd7902c2932e418702b84d0cc07"
	now := time.Date(2026, 11, 24, 10, 0, 0, 0, time.UTC)
	var long strings.Builder
	for i := range 20000 {
		long.WriteRune(rune(0x4e00 + i))
	}
	g := &config.Guards{Protect: config.Protect{ComputerDNSNames: []string{"bücher*"}}}
	for _, tc := range []struct{ name, dnsName, rule string }{
		{"long host label", long.String() + ".contoso.local", ""},
		{"long domain label", "xn--bcher01-n2a." + long.String(), offboard.RuleComputerDNSNames},
	} {
		start := time.Now()
		if rule, _ := refusal(g, id, &mde.Machine{ID: id, ComputerDNSName: tc.dnsName}, now); rule != tc.rule {
			t.Errorf("%s: rule %q, want %q", tc.name, rule, tc.rule)
		}
		if took := time.Since(start); took > time.Second {
			t.Errorf("%s: matched in %v", tc.name, took)
		}
	}
}

// nameCase is a device's computerDnsName, as the API gives it, and the
// rule it is refused under ("": none).
type nameCase struct{ name, dnsName, rule string }

// checkNames runs each case as a subtest: a device record of that
// computerDnsName, under host name globs.
func checkNames(t *testing.T, globs []string, cases []nameCase) {
	t.Helper()
	const id = "1e5bc9d7e413ddd7902c2932e418702b84d0cc07"
	now := time.Date(2026, 11, 24, 10, 0, 0, 0, time.UTC)
	g := &config.Guards{Protect: config.Protect{ComputerDNSNames: globs}}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			name, _ := json.Marshal(tc.dnsName)
			refusalOfRecord(t, g, id, `{"id":"`+id+`","computerDnsName":`+string(name)+`}`, now, tc.rule)
		})
	}
}
