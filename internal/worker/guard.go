package worker

import (
	"context"
	"fmt"
	"path"
	"slices"
	"strings"
	"time"
	"unicode"

	"go.uber.org/zap"
	"golang.org/x/net/idna"
	"golang.org/x/text/unicode/norm"

	"github.com/contoso-secops/mde-offboard/internal/config"
	"github.com/contoso-secops/mde-offboard/internal/mde"
	"github.com/contoso-secops/mde-offboard/offboard"
)

// judge applies the tenant's guards, and the request's own premise (its
// notSeenSince), to a resolved device, before any destructive call (dry
// runs included). It returns the policy to record on the request's result
// (nil: the tenant has no guards and the request no premise), the rule
// that refuses the device and why ("" when none does: the caller answers
// a refusal with blocked), and a result when the device cannot be read: a
// device the guards cannot see is never offboarded. The premise is judged
// on the read the guards make, or on the record a name lookup returned:
// it adds no read to one the guards make.
func (w *Worker) judge(ctx context.Context, j *job, dev *device) (pol *offboard.Policy, rule, why string, res *offboard.Result, err error) {
	g := &j.t.Config.Guards
	checked := g.Checked()
	since := j.req.NotSeenSince
	if !since.IsZero() {
		checked = append(checked, offboard.RuleNotSeenSince)
	}
	if checked == nil {
		return nil, "", "", nil, nil
	}
	pol = &offboard.Policy{Checked: checked}
	// The device id needs no read: refuse a listed one before any call.
	// A device a name lookup returned was read all the same: its
	// lastSeen is recorded.
	if rule, why := refusal(g, dev.id, nil, time.Time{}); rule != "" {
		pol.LastSeen = lastSeen(dev.machine)
		return pol, rule, why, nil, nil
	}
	if j.needsDevice() && dev.machine == nil {
		res, err := w.readDevice(ctx, j, dev, "read the device for the guards: ")
		if err != nil || res != nil {
			return pol, "", "", res, err
		}
	}
	if dev.machine == nil {
		return pol, "", "", nil, nil
	}
	pol.LastSeen = lastSeen(dev.machine)
	rule, why = refusal(g, dev.id, dev.machine, w.guardNow(dev))
	if rule == "" && !since.IsZero() {
		if why = seenSince(since, dev.machine); why != "" {
			rule = offboard.RuleNotSeenSince
		}
	}
	return pol, rule, why, nil, nil
}

// needsDevice says whether the request's checks look at the device
// record: a guard other than protect.machineIds, or the request's
// notSeenSince.
func (j *job) needsDevice() bool {
	return j.t.Config.Guards.NeedsDevice() || !j.req.NotSeenSince.IsZero()
}

// seenSince says why the request's premise does not hold: Defender saw
// the device after since (its lastSeen is in a later second), or gives
// no lastSeen that reads as the time of a sighting, which cannot show
// that it was not seen; "" when the premise holds. lastSeen is compared
// as Defender gives it, to the request's time, with no clock of this host
// between them, to the second: a plan's lastSeen whose fractions a
// spreadsheet cut or rounded, or a record Defender gives with seven
// digits where the plan's read gave none, is the same sighting, and a
// device sends its full report about once a day, so one seen again is
// later by hours, not by a fraction of a second.
func seenSince(since time.Time, m *mde.Machine) string {
	last, ok := m.LastSeenTime()
	want := "; the request offboards it only if it was not seen after " + since.UTC().Format(time.RFC3339Nano)
	switch {
	case m.LastSeen == "":
		return "Defender gives no lastSeen for the device" + want
	case !ok:
		return "the device's lastSeen " + offboard.Quote(m.LastSeen) + " is not a time" + want
	case last.Before(mde.EarliestSighting):
		return "the device's lastSeen " + offboard.Quote(m.LastSeen) + " is a placeholder, not a sighting" + want
	case last.Truncate(time.Second).After(since):
		return "Defender saw the device again (lastSeen " + offboard.Quote(m.LastSeen) + ")" + want
	}
	return ""
}

// guardNow is the time the device's lastSeen is measured from: now by
// this host's clock, or by the API's when the answer that read the
// device gave its Date and that is earlier (moved on by the time since
// the read). lastSeen is the API's time: a host clock that runs ahead
// (its time synchronisation failed, and a NATS server on the same host
// runs as far ahead, so nothing tells it off) would take a device seen
// an hour ago for one inactive for days. The earlier of the two errs
// toward refusing.
func (w *Worker) guardNow(dev *device) time.Time {
	now := w.clock.Now()
	if dev.served.IsZero() {
		return now
	}
	if api := dev.served.Add(sinceBoth(w.clock, dev.read)); api.Before(now) {
		return api
	}
	return now
}

// lastSeen is the device's lastSeen as a result's policy records it, in
// RFC 3339, as the result's schema has it: the API may give a time
// without a zone (read as UTC), or something that is no time (left out;
// a refusal's message quotes it). "" when the device was not read (m
// nil).
func lastSeen(m *mde.Machine) string {
	if m == nil {
		return ""
	}
	if last, ok := m.LastSeenTime(); ok {
		return last.Format(time.RFC3339Nano)
	}
	return ""
}

// readDevice reads the device as Defender reports it now, under the
// machines quota; what prefixes a failure's message. A result means it
// could not be read: the read's answer decides the outcome (forbidden,
// machine_not_found, ...).
func (w *Worker) readDevice(ctx context.Context, j *job, dev *device, what string) (*offboard.Result, error) {
	v, res, err := w.read(ctx, j, mde.APIMachines, what, func(ctx context.Context) *mde.Verdict {
		return j.t.Client.GetMachine(ctx, dev.id)
	})
	if err != nil || res != nil {
		return res, err
	}
	m, err := mde.ParseMachine(v.Body)
	if err != nil {
		return j.failed(offboard.CodeAPIError, err.Error(), v), nil
	}
	if !strings.EqualFold(m.ID, dev.id) {
		return j.failed(offboard.CodeAPIError, "the API answered the read of the device with another device", v), nil
	}
	dev.machine, dev.read, dev.served = &m, w.clock.Now(), v.ServerTime
	return nil, nil
}

// blocked is the failed result of a device a guard refused; it is
// counted in mde_offboard_blocked_total with the result (countResult).
func (w *Worker) blocked(j *job, dev *device, rule, why string) *offboard.Result {
	j.log.Info("device refused by a guard", zap.String("machine_id", dev.id), zap.String("rule", rule))
	r := j.failed(offboard.CodeBlockedByPolicy, "blocked by "+rule+": "+why, nil)
	r.Error.Rule = rule
	if r.ComputerDNSName == "" && dev.machine != nil {
		r.ComputerDNSName = apiText(dev.machine.ComputerDNSName)
	}
	return r
}

// refusal is the first guard rule, in the contract's order, that refuses
// the device, and what matched, for people; "" when none does. m is the
// device as Defender reported it; nil checks the device id alone.
// Device-provided text in why is quoted with offboard.Quote.
func refusal(g *config.Guards, id string, m *mde.Machine, now time.Time) (rule, why string) {
	p := &g.Protect
	if slices.Contains(p.MachineIDs, strings.ToLower(id)) {
		return offboard.RuleMachineIDs, "the device id " + id + " is listed"
	}
	if m == nil {
		return "", ""
	}
	if len(p.ComputerDNSNames) > 0 {
		if why := protectedName(p.ComputerDNSNames, m.ComputerDNSName); why != "" {
			return offboard.RuleComputerDNSNames, why
		}
	}
	if why := tagged(p.MachineTags, m); why != "" {
		return offboard.RuleMachineTags, why
	}
	if why := inGroup(p.RbacGroups, m); why != "" {
		return offboard.RuleRbacGroups, why
	}
	if d := g.RequireInactiveFor; d != nil {
		if why := tooRecent(time.Duration(*d), m, now); why != "" {
			return offboard.RuleRequireInactiveFor, why
		}
	}
	return "", ""
}

// tagged says why protect.machineTags refuses the device: it carries one
// of tags, or the API gives it no machineTags (null or missing), and it
// may carry one: only a list, empty or not, says which tags it has; ""
// when neither.
//
// Tags and device group names are the same as people read them
// (config.Folded): case aside (Unicode's full case folding:
// "AUSSENDIENST" is "Außendienst"), whatever white space stands around
// and between the words, and however their characters are encoded
// (Unicode's compatibility form, NFKC: an accent composed or not, letters
// in full width, a ligature). A copy from a web page, a chat or a word
// processor writes a no-break space where one types a space, macOS a
// decomposed accent, an East Asian input method full-width letters; seen
// alike, one entry would match no device. Each name is put in that form
// once, not once for each pair: 50 tags on a device against 50 protected
// ones took 12 ms (TestGuardManyTagsAreCheap), for every request and
// every device of a plan.
func tagged(tags []string, m *mde.Machine) string {
	if len(tags) == 0 {
		return ""
	}
	if m.MachineTags == nil { // encoding/json reads [] as an empty list, null as none
		return "the API gives the device no machineTags to match the protected tags against; it may carry one"
	}
	has := make([]string, len(m.MachineTags))
	for i, tag := range m.MachineTags {
		has[i] = config.Folded(tag)
	}
	for _, tag := range tags {
		if i := slices.Index(has, config.Folded(tag)); i >= 0 {
			return "the device is tagged " + offboard.Quote(m.MachineTags[i])
		}
	}
	return ""
}

// inGroup says why protect.rbacGroups refuses the device: it is in one
// of groups, or in a device group the API does not name (an rbacGroupId
// other than 0 without an rbacGroupName), or the API gives neither a
// group name nor an id (null or missing): either may be one of them; ""
// when none of these. Only an id of 0 says the device is in no group.
// Names compare as tags do (tagged).
func inGroup(groups []string, m *mde.Machine) string {
	if len(groups) == 0 {
		return ""
	}
	if config.Words(m.RbacGroupName) == "" {
		if m.RbacGroupID == "" {
			return "the API gives the device no device group name or id to match the protected groups against; it may be in one"
		}
		if id, err := m.RbacGroupID.Float64(); err != nil || id != 0 {
			return "the device is in the device group with id " + offboard.Quote(string(m.RbacGroupID)) + ", which the API does not name; it may be a protected one"
		}
		return ""
	}
	in := config.Folded(m.RbacGroupName)
	for _, group := range groups {
		if config.Folded(group) == in {
			return "the device is in the device group " + offboard.Quote(m.RbacGroupName)
		}
	}
	return ""
}

// protectedName says why protect.computerDnsNames refuses a device of
// this name: it matches one of globs in one of its forms (matchedNames),
// or there is no name to tell from a protected one, as with a missing
// lastSeen; "" when neither.
func protectedName(globs []string, dnsName string) string {
	names := matchedNames(dnsName)
	if names[0] == "" {
		return "the API gives the device no computerDnsName to match the protected names against"
	}
	for _, glob := range globs {
		if slices.ContainsFunc(names, func(name string) bool { return matchesName(glob, name) }) {
			return fmt.Sprintf("computerDnsName %s matches %s", offboard.Quote(dnsName), offboard.Quote(glob))
		}
	}
	return ""
}

// matchedNames are the forms of a device's computerDnsName the globs are
// matched against: lower case, without the white space around it or
// final dots, as written, in Unicode's compatibility form (NFKC:
// full-width letters as the letters they stand for), that form without
// the characters one does not see (config.Visible) and without white
// space inside it (a tab, a carriage return, a no-break space: no DNS
// name holds one, and one does not see it either) and with the
// hyphen-minus for the other hyphens and dashes (config.Hyphens), and in
// the DNS's
// ASCII form (punycode, xn--) and in letters, whichever it is written in,
// label by label.
// A name the API gives written so is the name it spells: matched as
// written alone, it would match no glob written the other way, and the
// device would go unprotected. The first is "" when the name is blank,
// or holds nothing but characters one does not see: nothing tells such a
// name from a protected one either.
func matchedNames(dnsName string) []string {
	trim := func(s string) string {
		return strings.ToLower(strings.TrimRightFunc(strings.TrimSpace(s), func(r rune) bool { return r == '.' || unicode.IsSpace(r) }))
	}
	compatible := norm.NFKC.String(dnsName)
	visible := strings.Map(func(r rune) rune {
		if unicode.IsSpace(r) {
			return -1
		}
		return r
	}, config.Hyphens(config.Visible(compatible)))
	if trim(visible) == "" {
		return []string{""}
	}
	names := []string{trim(dnsName), trim(compatible), trim(visible)}
	for _, name := range names[:3] {
		if name == "" {
			continue
		}
		names = append(names, trim(eachLabel(name, idnaNames.ToASCII)), trim(eachLabel(name, idnaNames.ToUnicode)))
	}
	forms := names[:1:1]
	for _, name := range names[1:] {
		if name != "" && !slices.Contains(forms, name) {
			forms = append(forms, name)
		}
	}
	return forms
}

// eachLabel is name with each of its labels converted by to, one by
// one: a label to cannot convert (a hyphen at its end, punycode that
// decodes to nothing) is kept as it is, and does not keep the others,
// the host's among them, from being converted. So is a label longer than
// maxLabel, which no DNS name holds in either form: punycode takes time
// growing with the square of a label's length.
func eachLabel(name string, to func(string) (string, error)) string {
	labels := strings.Split(name, ".")
	for i, label := range labels {
		if len(label) > maxLabel {
			continue
		}
		if c, err := to(label); err == nil {
			labels[i] = c
		}
	}
	return strings.Join(labels, ".")
}

// maxLabel is the most bytes a label of a DNS name takes in letters: 63
// characters (its punycode has at least as many), of up to 4 bytes each.
const maxLabel = 4 * 63

// idnaNames converts a host name between its letters and the DNS's ASCII
// form, taking what Windows host names hold (an underscore) as it is.
var idnaNames = idna.New(idna.MapForLookup(), idna.StrictDomainName(false), idna.Transitional(false))

// matchesName says whether a computerDnsNames glob matches a device's
// name (lower case, no final dot). A glob without a dot names hosts
// whatever their domain: it matches the name's first label too, so
// "dc01" protects dc01.contoso.local, the name Defender gives a domain
// member, as well as a dc01 in no domain.
func matchesName(glob, name string) bool {
	if ok, _ := path.Match(glob, name); ok {
		return true
	}
	if strings.Contains(glob, ".") {
		return false
	}
	host, _, _ := strings.Cut(name, ".")
	ok, _ := path.Match(glob, host)
	return ok
}

// tooRecent says why the device does not show the required inactivity:
// Defender saw it less than d before now, or gives no lastSeen that reads
// as a time of a sighting; "" when it does.
func tooRecent(d time.Duration, m *mde.Machine, now time.Time) string {
	last, ok := m.LastSeenTime()
	switch {
	case m.LastSeen == "":
		return "Defender gives no lastSeen for the device; it must have been inactive for " + days(d)
	case !ok:
		return "the device's lastSeen " + offboard.Quote(m.LastSeen) + " is not a time; it must have been inactive for " + days(d)
	case last.Before(mde.EarliestSighting):
		return "the device's lastSeen " + offboard.Quote(m.LastSeen) + " is a placeholder, not a sighting; it must have been inactive for " + days(d)
	case last.After(now):
		return "the device's lastSeen " + offboard.Quote(m.LastSeen) + " is in the future; it must have been inactive for " + days(d)
	case last.After(now.Add(-d)):
		return fmt.Sprintf("Defender saw the device %s ago (lastSeen %s); it must have been inactive for %s",
			days(now.Sub(last).Truncate(time.Minute)), offboard.Quote(m.LastSeen), days(d))
	}
	return ""
}

// days writes a duration of whole days as "90d", any other as Go does.
func days(d time.Duration) string {
	const day = 24 * time.Hour
	if d >= day && d%day == 0 {
		return fmt.Sprintf("%dd", d/day)
	}
	return d.String()
}
