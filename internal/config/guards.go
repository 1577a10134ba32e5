package config

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"math"
	"path"
	"regexp"
	"slices"
	"strings"
	"time"
	"unicode"

	"golang.org/x/text/cases"
	"golang.org/x/text/unicode/norm"

	"github.com/contoso-secops/mde-offboard/internal/limiter"
	"github.com/contoso-secops/mde-offboard/offboard"
)

// Guards are a tenant's rules against offboarding a device that must keep
// its protection. The worker applies them to the device as Defender reports
// it, after resolving it and before any destructive call.
type Guards struct {
	Protect Protect `yaml:"protect"`
	// RequireInactiveFor refuses a device Defender saw (lastSeen) less than
	// this long ago, or whose lastSeen is missing; nil: not checked.
	RequireInactiveFor *Duration `yaml:"requireInactiveFor"`
	// Budget caps the actions created for the tenant in any sliding
	// window: "<count>/<duration>" as in limits ("500/24h"), the window
	// at least limiter.MinBudget; empty: none.
	// Load parses it into Window.
	Budget string `yaml:"budget"`
	// BudgetWindow is Budget parsed; nil: no budget.
	BudgetWindow *limiter.Window `yaml:"-"`
}

// Protect lists the devices that are never offboarded. Every comparison
// ignores case, and a tag's or group's the white space around and between
// its words and how its characters are encoded (NFKC); Load lower-cases
// MachineIDs and ComputerDNSNames.
type Protect struct {
	MachineIDs []string `yaml:"machineIds"`
	// ComputerDNSNames are globs (path.Match) of computerDnsName; one
	// without a dot matches the host name in any domain as well.
	ComputerDNSNames []string `yaml:"computerDnsNames"`
	MachineTags      []string `yaml:"machineTags"` // any of the device's machineTags
	RbacGroups       []string `yaml:"rbacGroups"`  // the device group, rbacGroupName
}

// Guard kinds, as a result's policy.checked lists them.
const (
	GuardProtect            = "protect"
	GuardRequireInactiveFor = "requireInactiveFor"
)

// Checked lists the kinds of guard configured, in a fixed order; none:
// the tenant has no guards.
func (g *Guards) Checked() []string {
	var kinds []string
	p := &g.Protect
	if len(p.MachineIDs)+len(p.ComputerDNSNames)+len(p.MachineTags)+len(p.RbacGroups) > 0 {
		kinds = append(kinds, GuardProtect)
	}
	if g.RequireInactiveFor != nil {
		kinds = append(kinds, GuardRequireInactiveFor)
	}
	return kinds
}

// NeedsDevice reports whether a guard looks at the device record: every one
// but protect.machineIds does.
func (g *Guards) NeedsDevice() bool {
	p := &g.Protect
	return len(p.ComputerDNSNames)+len(p.MachineTags)+len(p.RbacGroups) > 0 || g.RequireInactiveFor != nil
}

// check validates the guards and lower-cases what is matched by lower-case.
func (g *Guards) check() error {
	var errs []error
	p := &g.Protect
	for i, id := range p.MachineIDs {
		if !offboard.ValidMachineID(id) {
			errs = append(errs, fmt.Errorf("guards.protect.machineIds[%d]: not a device id (40 hexadecimal characters)", i))
		}
		p.MachineIDs[i] = strings.ToLower(id)
	}
	for i, glob := range p.ComputerDNSNames {
		var err error
		if p.ComputerDNSNames[i], err = checkGlob(glob); err != nil {
			errs = append(errs, fmt.Errorf("guards.protect.computerDnsNames[%d]: %w", i, err))
		}
	}
	for _, l := range []struct {
		name   string
		values []string
	}{{"machineTags", p.MachineTags}, {"rbacGroups", p.RbacGroups}} {
		for i, v := range l.values {
			// Compared as Words has it: one of nothing but characters
			// it leaves out (a variation selector) is empty too.
			if Words(v) == "" {
				errs = append(errs, fmt.Errorf("guards.protect.%s[%d]: empty", l.name, i))
			}
		}
	}
	errs = append(errs, p.checkVisible()...)
	if d := g.RequireInactiveFor; d != nil && *d <= 0 {
		errs = append(errs, errors.New("guards.requireInactiveFor must be positive"))
	}
	g.BudgetWindow = nil
	if g.Budget != "" {
		w, err := limiter.ParseBudget(g.Budget)
		if err != nil {
			errs = append(errs, fmt.Errorf("guards.budget: %w", err))
		} else {
			g.BudgetWindow = &w
		}
	}
	return errors.Join(errs...)
}

// checkGlob checks a computerDnsNames glob and returns it as it is
// matched: in Unicode's compatibility form (NFKC), as the device's name
// is (an accent composed, letters of the usual width: written otherwise,
// it would match no name), with dots for ideographic full stops, which
// DNS reads as dots (UTS #46) as the device's name is read, and which an
// East Asian input method types for a period, with the hyphen-minus for
// the other hyphens and dashes (Hyphens), lower case, without spaces
// around it or a final dot. Spaces
// around a glob are no part of a name: kept, the glob would match no
// device, and protect nothing without a word. So would a space or a
// comma inside it, which no computerDnsName holds: several globs written
// in one string; and a slash or an empty label (".tier0.contoso.local",
// a domain written as a DNS suffix is, for "*.tier0.contoso.local"; two
// dots in a row; two final dots), a backslash before a letter or a
// digit (escapesLetter), a range written backwards (rangeBackwards), and
// a class written as a shell negates one (shellNegation).
func checkGlob(glob string) (string, error) {
	glob = strings.ToLower(strings.TrimSuffix(strings.TrimSpace(globLookalikes.Replace(norm.NFKC.String(glob))), "."))
	if _, err := path.Match(glob, ""); glob == "" || err != nil {
		return glob, errors.New("not a glob (Go path.Match: *, ?, [a-z], \\ escapes)")
	}
	if strings.ContainsFunc(glob, func(r rune) bool { return r == ',' || unicode.IsSpace(r) }) {
		return glob, errors.New("holds a space or a comma, which no computerDnsName has; give one glob per list item")
	}
	if escapesLetter(glob) {
		return glob, errors.New(`holds a backslash before a letter or a digit, which path.Match reads as the letter or digit alone: a host is dc01 or dc01.contoso.local, not CONTOSO\DC01, and a digit is [0-9], not \d`)
	}
	if rangeBackwards(glob) {
		return glob, errors.New("holds a range written backwards, from its last character to its first ([9-1]), which path.Match takes for no character at all, so the glob matches no computerDnsName; write it [1-9]")
	}
	if shellNegation(glob) {
		return glob, errors.New("holds a class starting with !, which path.Match reads as \"!\" or one of the characters after it, not as any character but those (write [^0-9], not [!0-9])")
	}
	if strings.Contains(glob, "/") || slices.Contains(strings.Split(glob, "."), "") {
		return glob, errors.New("holds a slash, or a dot at the start, at the end or next to another, which no computerDnsName has; the hosts of a domain are *.contoso.local")
	}
	return glob, nil
}

// globLookalikes writes the ideographic full stop as a dot (NFKC has
// written the full-width and half-width ones as a dot and as it), and
// the hyphens, dashes and minus sign as the hyphen-minus (Hyphens).
var globLookalikes = strings.NewReplacer(append([]string{"\u3002", "."}, dashes...)...)

// escapesLetter says whether a glob escapes a letter or a digit, which
// needs no escape: path.Match reads \d as d, so the backslash of a
// Windows account domain's name (CONTOSO\DC01) or of a regular
// expression's class (\d) makes a glob that matches no device meant, and
// protects nothing without a word.
func escapesLetter(glob string) bool {
	escaped := false
	for _, r := range glob {
		switch {
		case escaped:
			if unicode.IsLetter(r) || unicode.IsDigit(r) {
				return true
			}
			escaped = false
		case r == '\\':
			escaped = true
		}
	}
	return false
}

// rangeBackwards says whether a glob (one path.Match takes) holds a
// character class with a range whose first character comes after its
// last ([9-1], [z-a]): path.Match takes it without an error, and it
// matches no character, so the glob matches no device and protects
// nothing without a word.
func rangeBackwards(glob string) bool {
	return anyClass(glob, func(class []rune) bool {
		// char reads a character of the class at i, escaped or not, and
		// returns it and where the next one starts.
		char := func(i int) (rune, int) {
			if class[i] == '\\' && i+1 < len(class) {
				i++
			}
			return class[i], i + 1
		}
		i := 0
		if len(class) > 0 && class[0] == '^' {
			i++
		}
		for i < len(class) {
			var lo, hi rune
			lo, i = char(i)
			if i < len(class) && class[i] == '-' {
				if hi, i = char(i + 1); hi < lo {
					return true
				}
			}
		}
		return false
	})
}

// shellNegation says whether a glob holds a character class starting
// with "!" ([!0-9]): a shell's "any character but these", which
// path.Match reads as "!" or one of these. No computerDnsName holds "!",
// so such a glob protects the devices meant to be left out, and not the
// others meant.
func shellNegation(glob string) bool {
	return anyClass(glob, func(class []rune) bool { return len(class) > 0 && class[0] == '!' })
}

// anyClass says whether f holds for the text between the brackets of one
// of the character classes of a glob that path.Match takes.
func anyClass(glob string, f func(class []rune) bool) bool {
	rs := []rune(glob)
	for i := 0; i < len(rs); i++ {
		switch rs[i] {
		case '\\':
			i++ // the escaped character stands for itself
		case '[':
			start := i + 1
			for i = start; i < len(rs) && rs[i] != ']'; i++ {
				if rs[i] == '\\' {
					i++
				}
			}
			if f(rs[start:min(i, len(rs))]) {
				return true
			}
		}
	}
	return false
}

// checkVisible refuses a glob, tag or group that holds a character one
// does not see: a control character, or a format one such as a
// zero-width space, a byte order mark or a soft hyphen, which a copy from
// a web page or a chat can leave behind. Defender writes names, tags and
// groups without them, so such an entry matches no device and would
// protect nothing without a word. The error names the place, not the
// value.
func (p *Protect) checkVisible() []error {
	var errs []error
	for _, l := range []struct {
		name   string
		values []string
	}{{"computerDnsNames", p.ComputerDNSNames}, {"machineTags", p.MachineTags}, {"rbacGroups", p.RbacGroups}} {
		for i, v := range l.values {
			if offboard.Hidden(strings.TrimSpace(v)) { // spaces around are left out when matched
				errs = append(errs, fmt.Errorf("guards.protect.%s[%d]: holds a character one does not see (a control character, a zero-width space, a byte order mark, a soft hyphen); it would match no device", l.name, i))
			}
		}
	}
	return errs
}

// ParseDuration reads a Go duration in which d stands for days too
// ("90d", "1d12h", "1.5d").
func ParseDuration(s string) (time.Duration, error) { return parseDuration(s) }

// ErrTooManyDays is the error of a number of days ("100000d") past
// MaxDays.
var ErrTooManyDays = fmt.Errorf("more than %d days", MaxDays)

// ErrTooLong is the error of a Go duration ("9999999h") longer than a
// Duration holds.
var ErrTooLong = errors.New("longer than a duration holds (2562047h, about 292 years)")

// goDuration is a positive Go duration's form, its length aside:
// time.ParseDuration gives one too long the error of a malformed one.
var goDuration = regexp.MustCompile(`^\+?(([0-9]+\.?[0-9]*|\.[0-9]+)(ns|us|µs|μs|ms|s|m|h))+$`)

// dayDuration is goDuration's form with d for days among its units, and
// durationPart one number and unit of it.
var (
	dayDuration  = regexp.MustCompile(`^\+?(([0-9]+\.?[0-9]*|\.[0-9]+)(ns|us|µs|μs|ms|s|m|h|d))+$`)
	durationPart = regexp.MustCompile(`([0-9]+\.?[0-9]*|\.[0-9]+)(ns|us|µs|μs|ms|s|m|h|d)`)
)

// MaxDays is the most days a duration may be written as: few enough not
// to overflow a Duration (which holds about 106,751 days).
const MaxDays = 99999

// parseDuration reads a Go duration in which d stands for days (24h) as
// a unit like the others: "90d", "1d12h", "1.5d". Go durations, plus d
// for days, is the contract's form of --inactive-for, and "1d12h" read as
// no duration at all.
func parseDuration(s string) (time.Duration, error) {
	if !strings.Contains(s, "d") { // no Go unit holds a d
		d, err := time.ParseDuration(s)
		if err != nil && goDuration.MatchString(s) {
			return 0, ErrTooLong
		}
		return d, err
	}
	if !dayDuration.MatchString(s) {
		return 0, errors.New("not a Go duration, with d for days")
	}
	var days time.Duration
	var rest strings.Builder
	for _, part := range durationPart.FindAllStringSubmatch(s, -1) {
		if part[2] != "d" {
			rest.WriteString(part[0])
			continue
		}
		// As many hours as days, then times 24: a fraction of a day is
		// read as exactly as time.ParseDuration reads one of an hour.
		h, err := time.ParseDuration(part[1] + "h")
		if err != nil || h > MaxDays*time.Hour-days/24 {
			return 0, ErrTooManyDays
		}
		days += 24 * h
	}
	if rest.Len() == 0 {
		return days, nil
	}
	d, err := time.ParseDuration(rest.String())
	if err != nil || d > math.MaxInt64-days {
		return 0, ErrTooLong // of the right form, so too long
	}
	return days + d, nil
}

// sameGuards refuses a tenant whose Entra ID tenant another name of the
// file serves with other protect or requireInactiveFor guards: a request
// names its tenant by its subject, so a device the one name protects
// could be offboarded through the other. first holds each Entra ID
// tenant's first name; a budget may differ, as it counts per name.
func sameGuards(first map[string]*Tenant, t *Tenant) error {
	id := strings.ToLower(t.TenantID)
	other, ok := first[id]
	if !ok {
		first[id] = t
		return nil
	}
	if guardsKey(&other.Guards) != guardsKey(&t.Guards) {
		return fmt.Errorf("tenant %q: the same tenantId as tenant %q, with other guards: a device one protects could be offboarded through the other; give both the same protect and requireInactiveFor", t.Name, other.Name)
	}
	return nil
}

// Words is s as the guards compare a tag or a device group name: in
// Unicode's compatibility form (NFKC), without the characters one does
// not see (control and format characters: a zero-width space, a byte
// order mark, a soft hyphen, a joiner), its words separated by one
// space. A tag pasted into the portal from a web page or a chat can hold
// them, and is the tag it reads as. The Turkish dotted capital I and
// dotless i are taken as I and i: Unicode's case folding keeps them
// apart from both, and a tag typed on a Turkish keyboard with caps lock
// on (CRİTİCAL) would not match the guard's Critical. So are the
// hyphens and dashes as the hyphen-minus: a word processor writes " - "
// as an en dash and keeps a non-breaking hyphen, and a tag pasted from
// it (Tier‑0) would not match the guard's Tier-0.
func Words(s string) string {
	return strings.Join(strings.Fields(Visible(lookalikes.Replace(norm.NFKC.String(s)))), " ")
}

// Folded is a tag or device group name as the guards compare it: two
// are the same when their Folded forms are. It is Words in Unicode's
// full case folding (cases.Fold), in NFKC form again, as folding can
// leave letters decomposed, with each letter then the least of its case
// folding orbit (folded). German capitals write ß as SS ("AUSSENDIENST"
// is "Außendienst"), and Swiss German writes ss for it: compared letter
// by letter (strings.EqualFold), a device tagged in capitals went
// unprotected. cases.Fold alone is no one form: it writes the Cherokee
// letters in the other case (Ꮳ as ꮳ, ꮳ as Ꮳ), and "ꮳꮃꭹ STRASSE" folded
// apart from "ᏣᎳᎩ Straße". Two names alike letter for letter
// (strings.EqualFold of their Words) have one Folded form
// (TestFoldedKeepsLetterForLetter).
func Folded(s string) string {
	return folded(norm.NFKC.String(cases.Fold().String(Words(s))))
}

// lookalikes writes the Turkish dotted capital I and dotless i as the
// letters I and i, and the hyphens, dashes and the minus sign as the
// hyphen-minus (NFKC has written the non-breaking hyphen as the hyphen,
// and the full-width and small hyphen-minus as it).
var lookalikes = strings.NewReplacer(append([]string{"İ", "I", "ı", "i"}, dashes...)...)

// dashes are the hyphens, dashes and minus sign NFKC leaves as they are,
// each followed by the hyphen-minus, for strings.NewReplacer.
var dashes = []string{"\u2010", "-", "\u2012", "-", "\u2013", "-", "\u2014", "-", "\u2015", "-", "\u2212", "-"}

// hyphens writes the hyphens, dashes and minus sign as the hyphen-minus.
var hyphens = strings.NewReplacer(dashes...)

// Hyphens is s (in NFKC form) with its hyphens, dashes and minus sign
// written as the hyphen-minus, as the guards compare names: no DNS name
// holds them, and a name pasted from a word processor (an en dash, a
// non-breaking hyphen) is the name it reads as.
func Hyphens(s string) string { return hyphens.Replace(s) }

// Visible is s without the characters one does not see (offboard.Unseen)
// other than white space: control characters, format characters (a
// zero-width space, a byte order mark, a soft hyphen, a joiner), and the
// others Unicode says to ignore when not rendered (a combining grapheme
// joiner, a variation selector, a Hangul filler).
func Visible(s string) string {
	return strings.Map(func(r rune) rune {
		if offboard.Unseen(r) && !unicode.IsSpace(r) {
			return -1
		}
		return r
	}, s)
}

// folded is s with each letter the least of its case folding orbit:
// two strings are the same as strings.EqualFold compares them when their
// folded forms are. Lower
// case is not that: "İ" lower-cases to "i", a letter it does not fold
// to, and "Σ" to "σ", which "ς" folds to without being it.
func folded(s string) string {
	return strings.Map(func(r rune) rune {
		least := r
		for f := unicode.SimpleFold(r); f != r; f = unicode.SimpleFold(f) {
			least = min(least, f)
		}
		return least
	}, s)
}

// guardsKey is what a tenant's protect and requireInactiveFor guards
// protect, in one string: each list sorted, compared as the guards
// compare. Device ids are matched as check left them (lower case), globs
// as check left them and written one way (SameGlob); tags and groups in
// their Folded form, as the worker matches them (case, white space and
// encoding aside).
func guardsKey(g *Guards) string {
	var b strings.Builder
	p := &g.Protect
	for _, l := range []struct {
		list         []string
		words, globs bool
	}{{p.MachineIDs, false, false}, {p.ComputerDNSNames, false, true}, {p.MachineTags, true, false}, {p.RbacGroups, true, false}} {
		keys := slices.Clone(l.list)
		for i, s := range keys {
			switch {
			case l.words:
				keys[i] = Folded(s)
			case l.globs:
				keys[i] = SameGlob(s)
			}
		}
		slices.Sort(keys)
		keys = slices.Compact(keys)
		fmt.Fprintf(&b, "%q;", keys)
	}
	if g.RequireInactiveFor != nil {
		fmt.Fprintf(&b, "%d", time.Duration(*g.RequireInactiveFor))
	}
	return b.String()
}

// GuardsDigest is what a replica announces of a tenant's guards to the
// others: a digest of its protect lists, requireInactiveFor (guardsKey:
// compared as the worker matches them) and budget. Two replicas whose
// digests for one tenant differ apply other guards to its requests,
// depending on which of them takes each.
func GuardsDigest(g *Guards) string {
	key := guardsKey(g) + "\x00"
	if g.BudgetWindow != nil {
		key += g.BudgetWindow.Spec()
	}
	sum := sha256.Sum256([]byte(key))
	return hex.EncodeToString(sum[:8])
}

// GuardsReply is the tenant's guards as a replica tells them
// (offboard.GuardsReply): nothing else of the tenant's settings.
func GuardsReply(tenant, replica string, g *Guards) offboard.GuardsReply {
	r := offboard.GuardsReply{
		Tenant: tenant, Replica: replica, Digest: GuardsDigest(g),
		Protect: offboard.GuardsProtect{
			MachineIDs: orEmpty(g.Protect.MachineIDs), ComputerDNSNames: orEmpty(g.Protect.ComputerDNSNames),
			MachineTags: orEmpty(g.Protect.MachineTags), RbacGroups: orEmpty(g.Protect.RbacGroups),
		},
	}
	if g.RequireInactiveFor != nil {
		r.RequireInactiveFor = time.Duration(*g.RequireInactiveFor).String()
	}
	if g.BudgetWindow != nil {
		r.Budget = g.BudgetWindow.Spec()
	}
	return r
}

// orEmpty is list, or an empty one for none: a list the JSON shows as [].
func orEmpty(list []string) []string {
	if list == nil {
		return []string{}
	}
	return slices.Clone(list)
}

// SameGlob is a glob (as check left it, or as a replica's guards answer
// shows it) written one way of those that
// match the same names: a character escaped that needs no escape
// ("dc\-01") unescaped, a class of one character ("dc0[1]") written as
// the character, and a run of stars ("dc**") as one star. Two tenants
// files that wrote a glob apart protect the same devices, and their
// replicas agree.
func SameGlob(glob string) string {
	rs := []rune(glob)
	var b strings.Builder
	// literal writes a character that stands for itself, escaped only
	// where path.Match would read it otherwise.
	literal := func(r rune) {
		if strings.ContainsRune(`*?[\`, r) {
			b.WriteRune('\\')
		}
		b.WriteRune(r)
	}
	for i := 0; i < len(rs); i++ {
		switch r := rs[i]; r {
		case '*':
			if !strings.HasSuffix(b.String(), "*") || strings.HasSuffix(b.String(), `\*`) {
				b.WriteRune('*')
			}
		case '\\':
			if i+1 < len(rs) {
				i++
				literal(rs[i])
			} else {
				b.WriteRune(r)
			}
		case '[':
			end := i + 1
			for end < len(rs) && rs[end] != ']' {
				if rs[end] == '\\' {
					end++
				}
				end++
			}
			class := rs[i+1 : min(end, len(rs))]
			switch {
			case len(class) == 1 && class[0] != '^' && class[0] != '\\' && class[0] != '-':
				literal(class[0])
			case len(class) == 2 && class[0] == '\\':
				literal(class[1])
			default:
				b.WriteString(string(rs[i:min(end+1, len(rs))]))
			}
			i = end
		default:
			b.WriteRune(r)
		}
	}
	return b.String()
}
