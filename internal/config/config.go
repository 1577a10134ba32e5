package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"math"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"text/template"
	"text/template/parse"
	"time"
	"unicode/utf8"

	"go.yaml.in/yaml/v3"

	"github.com/contoso-secops/mde-offboard/internal/limiter"
	"github.com/contoso-secops/mde-offboard/internal/mde"
	"github.com/contoso-secops/mde-offboard/offboard"
)

var guid = regexp.MustCompile(`^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$`)

// DefaultComment is the comment sent when neither the request nor the
// tenant gives one.
const DefaultComment = "Offboarded by mde-offboard: {{.Source}} {{.RequestID}}"

// Tenant is one entry of the tenants file.
type Tenant struct {
	Name                    string              `yaml:"name"`
	TenantID                string              `yaml:"tenantId"`
	ClientID                string              `yaml:"clientId"`
	ClientSecretFile        string              `yaml:"clientSecretFile"`
	ClientSecretEnv         string              `yaml:"clientSecretEnv"`
	CertificateFile         string              `yaml:"certificateFile"`
	CertificatePasswordFile string              `yaml:"certificatePasswordFile"`
	WorkloadIdentity        bool                `yaml:"workloadIdentity"`
	TokenFile               string              `yaml:"tokenFile"`
	ManagedIdentity         bool                `yaml:"managedIdentity"`
	Cloud                   string              `yaml:"cloud"`
	APIBaseURL              string              `yaml:"apiBaseURL"`
	AuthorityHost           string              `yaml:"authorityHost"`
	Scope                   string              `yaml:"scope"`
	CAFile                  string              `yaml:"caFile"`
	Comment                 string              `yaml:"comment"`
	Limits                  map[string][]string `yaml:"limits"`
	MaxInFlight             int                 `yaml:"maxInFlight"`
	SpreadBurst             int                 `yaml:"spreadBurst"`
	Tracking                Tracking            `yaml:"tracking"`
	Guards                  Guards              `yaml:"guards"`

	// Filled by Load.
	Resolved Resolved `yaml:"-"`
}

// Tracking follows created actions until they finish.
type Tracking struct {
	Enabled     bool     `yaml:"enabled"`
	FirstCheck  Duration `yaml:"firstCheck"`  // first look after creation, default 1m
	MaxInterval Duration `yaml:"maxInterval"` // the interval doubles up to this, default 1h
	MaxAge      Duration `yaml:"maxAge"`      // stop following after this, default 168h
}

// Duration is a time.Duration written as a Go duration string ("90s"), in
// which d stands for days too ("90d", "1d12h").
type Duration time.Duration

// UnmarshalYAML reads a Go duration string, d for days among its units. Its
// error does not hold the value (a secret pasted in the wrong place would
// be shown): Parse names the key.
func (d *Duration) UnmarshalYAML(n *yaml.Node) error {
	v, err := parseDuration(n.Value)
	if err != nil || v < 0 {
		return &durationError{line: n.Line, column: n.Column}
	}
	*d = Duration(v)
	return nil
}

// durationError is a value that is not a duration, by where it stands.
type durationError struct{ line, column int }

func (e *durationError) Error() string {
	return fmt.Sprintf("line %d: a value is not a duration such as 90s, 5m, 1h or 90d", e.line)
}

// describe names the key of the value as in tenants[0].tracking.maxAge,
// found in the file's text, data. A value an alias repeats is named by
// its line alone: the decoder gives the alias's value the place of its
// anchor, where the key written may take it well (comment: &d soon).
func (e *durationError) describe(data []byte) string {
	n, key := findNode(data, func(n *yaml.Node, _ string) bool { return n.Line == e.line && n.Column == e.column })
	if key == "" || n.Anchor != "" && aliased(data, n) {
		return e.Error()
	}
	return fmt.Sprintf("line %d: %s is not a duration such as 90s, 5m, 1h or 90d", e.line, key)
}

// Resolved is what Load derives from a tenant entry.
type Resolved struct {
	Cloud   mde.Cloud
	Windows map[string][]limiter.Window // per API
	Comment *template.Template
}

// CommentData is what a comment template can use.
type CommentData struct {
	RequestID, Source, RequestedBy, Tenant, MachineID, ComputerDNSName string
}

// Credential returns the tenant's credential settings.
func (t *Tenant) Credential() mde.CredentialConfig {
	return mde.CredentialConfig{
		TenantID: t.TenantID, ClientID: t.ClientID,
		ClientSecretFile: t.ClientSecretFile, ClientSecretEnv: t.ClientSecretEnv,
		CertificateFile: t.CertificateFile, CertificatePasswordFile: t.CertificatePasswordFile,
		WorkloadIdentity: t.WorkloadIdentity, TokenFile: t.TokenFile, ManagedIdentity: t.ManagedIdentity,
	}
}

// defaultComment is DefaultComment's template.
var defaultComment = template.Must(newComment(DefaultComment))

// newComment parses a comment template, its functions that build text
// bounded (boundedFuncs).
func newComment(text string) (*template.Template, error) {
	return template.New("comment").Option("missingkey=error").Funcs(boundedFuncs).Parse(text)
}

// boundedFuncs stand for the template functions that build text, each
// cutting what it returns where the comment would be cut (cutOutput),
// and building no more than that (boundedSprint, boundedSprintf).
// Without a loop, a template can still double what it builds at each
// call it nests: js and printf %q escape the backslashes the call within
// wrote, and thirty of them build gigabytes in memory before a byte is
// written, at the start and for every request. Nor can one call build
// far more than it returns: printf pads each verb to the width asked,
// up to a million, and every function joins all its arguments.
var boundedFuncs = template.FuncMap{
	"html":     func(args ...any) string { return cutOutput(template.HTMLEscapeString(boundedSprint(args, false))) },
	"js":       func(args ...any) string { return cutOutput(template.JSEscapeString(boundedSprint(args, false))) },
	"urlquery": func(args ...any) string { return cutOutput(template.URLQueryEscaper(boundedSprint(args, false))) },
	"print":    func(args ...any) string { return boundedSprint(args, false) },
	"println":  func(args ...any) string { return boundedSprint(args, true) },
	"printf":   boundedSprintf,
}

// cutOutput cuts s to maxCommentOutput bytes, between characters.
func cutOutput(s string) string {
	return cutTo(s, maxCommentOutput)
}

// cutTo cuts s to n bytes at most, between characters.
func cutTo(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return string(wholeRunes([]byte(s[:max(n, 0)])))
}

// RenderComment fills the tenant's comment template. Where it leaves no
// text (a template of fields this request does not have), the default
// template gives the comment: the API refuses an offboard without one.
func (t *Tenant) RenderComment(d CommentData) (string, error) {
	s, err := renderComment(t.Resolved.Comment, d)
	if err != nil || s != "" {
		return s, err
	}
	return renderComment(defaultComment, d)
}

func renderComment(tmpl *template.Template, d CommentData) (string, error) {
	b := commentBuffer{max: maxCommentOutput}
	if err := tmpl.Execute(&b, d); err != nil && !errors.Is(err, errCommentFull) {
		return "", fmt.Errorf("comment template: %w", err)
	}
	s := strings.Join(strings.Fields(b.String()), " ")
	if r := []rune(s); len(r) > offboard.MaxCommentLength {
		s = string(r[:offboard.MaxCommentLength]) // characters, not bytes: never half a character
	}
	return s, nil
}

// checkLoops refuses what can make a comment template run without end:
// a range (over a large number it runs for hours and may write nothing,
// and the six text fields give it nothing else to go over) and a
// template of its own (define, block, template: one that calls itself
// twice runs for ever). The template runs at start and for every
// request, and cannot be stopped part-way.
func checkLoops(tmpl *template.Template) error {
	if len(tmpl.Templates()) > 1 {
		return errors.New("comment: define and block are not taken in a comment template")
	}
	var walk func(n parse.Node) error
	walk = func(n parse.Node) error {
		switch n := n.(type) {
		case *parse.RangeNode:
			return errors.New("comment: range is not taken in a comment template: it has only text fields to go over")
		case *parse.TemplateNode:
			return fmt.Errorf("comment: template %q is not taken in a comment template", n.Name)
		case *parse.ListNode:
			for _, c := range n.Nodes {
				if err := walk(c); err != nil {
					return err
				}
			}
		case *parse.IfNode:
			return errors.Join(walk(n.List), walkElse(walk, n.ElseList))
		case *parse.WithNode:
			return errors.Join(walk(n.List), walkElse(walk, n.ElseList))
		}
		return nil
	}
	return walk(tmpl.Root)
}

// walkElse walks an if's or a with's else branch, which may be absent.
func walkElse(walk func(parse.Node) error, l *parse.ListNode) error {
	if l == nil {
		return nil
	}
	return walk(l)
}

// maxCommentOutput bounds what a comment template writes: the comment
// is cut to offboard.MaxCommentLength characters, at most 4 bytes each,
// and what goes beyond is room for the white space folded away. A
// template that writes far more (printf with a wide field, many times)
// would otherwise be rendered whole into memory, at start and for each
// request.
const maxCommentOutput = 64 << 10

// errCommentFull stops a comment template that wrote maxCommentOutput.
var errCommentFull = errors.New("comment template output full")

// commentBuffer keeps the first max bytes written to it, and refuses
// more with errCommentFull, which ends the template's execution.
type commentBuffer struct {
	bytes.Buffer
	max int
}

func (b *commentBuffer) Write(p []byte) (int, error) {
	room := b.max - b.Len()
	if len(p) > room {
		// Cut between characters: a part of one would go to the API,
		// which reads it as U+FFFD.
		kept := wholeRunes(p[:max(room, 0)])
		b.Buffer.Write(kept)
		return len(kept), errCommentFull
	}
	return b.Buffer.Write(p)
}

// wholeRunes is p without the part of a character a cut left at its end.
func wholeRunes(p []byte) []byte {
	if i := lastRuneStart(p); i >= 0 && !utf8.FullRune(p[i:]) {
		return p[:i]
	}
	return p
}

// lastRuneStart is the index of the byte of p that begins its last
// character, -1 if none does within a character's length of its end.
func lastRuneStart(p []byte) int {
	for i := len(p) - 1; i >= 0 && i >= len(p)-utf8.UTFMax; i-- {
		if utf8.RuneStart(p[i]) {
			return i
		}
	}
	return -1
}

// quotedValue is a value the YAML decoder quotes in its errors (cannot
// unmarshal !!str `…`): a secret pasted where a path or a name belongs
// would be shown, so it is not. The decoder writes the value as it is,
// backquotes included: everything from an error's first backquote to its
// last goes.
var quotedValue = regexp.MustCompile("(?s)`.*`")

// quotedAnchor is an anchor's name the decoder quotes in its errors
// (unknown anchor '…' referenced): a value that begins with '*' is an
// alias, so a secret pasted with one in front would be shown whole.
var quotedAnchor = regexp.MustCompile(`(?s)anchor '.*' (referenced|value contains itself)`)

// decodeError is the text of the YAML decoder's error without the values
// it quotes, each of its errors on its own line as the decoder writes them,
// with the key written on its line (withKey).
func decodeError(err error, data []byte) string {
	var te *yaml.TypeError
	if !errors.As(err, &te) {
		return quotedAnchor.ReplaceAllString(quotedValue.ReplaceAllString(err.Error(), "a value"), "anchor $1")
	}
	keys := keysByLine(data)
	lines := make([]string, len(te.Errors))
	for i, e := range te.Errors {
		lines[i] = spellingHint(listHint(withKey(quotedValue.ReplaceAllString(e, "a value"), keys)))
	}
	return "yaml: unmarshal errors:\n  " + strings.Join(firstOf(lines, andMore), "\n  ")
}

// listHint adds to a decoder's error for one value where a list goes
// what the list looks like: a window written alone (offboard: "100/1m")
// or a single tag said only "cannot unmarshal !!str a value into
// []string".
func listHint(line string) string {
	switch {
	case !strings.HasSuffix(line, "into []string"):
		return line
	case strings.Contains(line, ".limits."):
		return line + `: write a list of windows, such as ["100/1m", "1500/1h"]`
	}
	return line + `: write a list, such as ["a", "b"]`
}

// unknownSetting is the decoder's error for a key no setting has.
var unknownSetting = regexp.MustCompile(`field (\S+) not found in type config\.(\w+)$`)

// settingsOf is the settings of each type the decoder names in its
// errors, by the type's name.
var settingsOf = map[string]reflect.Type{
	"Tenant": reflect.TypeFor[Tenant](), "Tracking": reflect.TypeFor[Tracking](),
	"Guards": reflect.TypeFor[Guards](), "Protect": reflect.TypeFor[Protect](), "File": reflect.TypeFor[File](),
}

// spellingHint adds to a decoder's error for an unknown key the setting
// it is most likely meant as, written otherwise (apiBaseUrl for
// apiBaseURL, clientSecretFIle): "field apiBaseUrl not found" did not
// say that only the case was wrong.
func spellingHint(line string) string {
	m := unknownSetting.FindStringSubmatch(line)
	if m == nil {
		return line
	}
	t, ok := settingsOf[m[2]]
	if !ok {
		return line
	}
	for f := range t.Fields() {
		name, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
		if name != "" && name != "-" && strings.EqualFold(name, m[1]) {
			return line + ": settings are case-sensitive; write " + name
		}
	}
	return line
}

// keysByLine is the paths of the keys written on each line of data, in
// document order (a map before its keys); nil if data is not YAML. The
// lines of a value an alias repeats hold none: the decoder gives an
// error in the alias's value the line of its anchor, where the key
// written may take that value well (comment: &w maybe, aliased where a
// boolean goes).
func keysByLine(data []byte) map[int][]string {
	var doc yaml.Node
	if yaml.Unmarshal(data, &doc) != nil {
		return nil
	}
	keys := map[int][]string{}
	var aliased []*yaml.Node
	walkNodes(&doc, func(key, n *yaml.Node, path string) bool {
		if key != nil {
			keys[key.Line] = append(keys[key.Line], path)
		}
		if n.Kind == yaml.AliasNode && n.Alias != nil {
			aliased = append(aliased, n.Alias)
		}
		return false
	})
	for _, n := range aliased {
		forgetLines(keys, n)
	}
	return keys
}

// forgetLines removes from keys the lines of n and of the nodes below it.
func forgetLines(keys map[int][]string, n *yaml.Node) {
	delete(keys, n.Line)
	for _, c := range n.Content {
		forgetLines(keys, c)
	}
}

// errorLine is the line number a decoder's error begins with.
var errorLine = regexp.MustCompile(`^line (\d+): `)

// withKey adds to a decoder's error the key written on its line: the one
// key there, or the map that holds every other key there (a flow map,
// tracking: {enabled: maybe}). Otherwise, or where the line holds no key
// (a list's item), the line alone says where.
func withKey(e string, keys map[int][]string) string {
	m := errorLine.FindStringSubmatchIndex(e)
	if m == nil {
		return e
	}
	line, err := strconv.Atoi(e[m[2]:m[3]])
	paths := keys[line]
	if err != nil || len(paths) == 0 {
		return e
	}
	for _, p := range paths[1:] {
		if !strings.HasPrefix(p, paths[0]+".") {
			return e
		}
	}
	return e[:m[1]] + paths[0] + ": " + e[m[1]:]
}

// File is the tenants file.
type File struct {
	Tenants []*Tenant `yaml:"tenants"`
}

// Load reads and checks a tenants file. Unknown keys are errors: a typo in
// a limit must not silently fall back to the default.
func Load(path string) (*File, error) {
	data, err := mde.ReadRegularFile(path, maxFileSize)
	switch {
	case errors.Is(err, mde.ErrNotRegular):
		return nil, fmt.Errorf("tenants file %s: not a regular file", path)
	case errors.Is(err, mde.ErrTooLarge):
		return nil, fmt.Errorf("tenants file %s: larger than %d MiB", path, maxFileSize>>20)
	case err != nil:
		return nil, fmt.Errorf("tenants file: %w", err)
	}
	return Parse(data)
}

// maxFileSize bounds a tenants file: thousands of tenants take well under
// a megabyte.
const maxFileSize = 16 << 20

// Parse checks a tenants file's content.
func Parse(data []byte) (*File, error) {
	f, err := decode(data)
	if err != nil {
		return nil, err
	}
	if err := f.check(); err != nil {
		return nil, err
	}
	return f, nil
}

// decode reads a tenants file's content, refusing what the decoder
// would read otherwise than it is written.
func decode(data []byte) (*File, error) {
	if err := checkUTF8(data); err != nil {
		return nil, fmt.Errorf("tenants file: %w", err)
	}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	var f File
	if err := dec.Decode(&f); err != nil {
		if errors.Is(err, io.EOF) {
			// No document at all: an empty file, or comments only.
			return nil, errors.New("tenants file: no tenants")
		}
		if de := (*durationError)(nil); errors.As(err, &de) {
			return nil, fmt.Errorf("tenants file: %s", de.describe(data))
		}
		return nil, fmt.Errorf("tenants file: %s%s", decodeError(err, data), tabIndent(err, data))
	}
	if anotherDocument(dec) {
		return nil, errors.New("tenants file: a second YAML document (---) follows the first: put every tenant in one tenants list")
	}
	if err := checkScalars(data); err != nil {
		return nil, fmt.Errorf("tenants file: %w", err)
	}
	if len(f.Tenants) == 0 {
		return nil, errors.New("tenants file: no tenants")
	}
	return &f, nil
}

// check checks each tenant and resolves it, and the tenants against
// each other.
func (f *File) check() error {
	seen := map[string]bool{}
	// The API's limits hold per application and Entra ID tenant; the
	// quota journal and the budget are kept per name. Two names for one
	// application in one tenant would each take the whole quota.
	apps := map[[2]string]string{}
	guarded := map[string]*Tenant{} // the first name of each Entra ID tenant
	// A managed identity gets tokens of its own Entra ID tenant only,
	// whatever tenantId says: the first name of each, by its client id
	// ("" for the host's own).
	identities := map[string]*Tenant{}
	comments := map[string]*template.Template{}
	var errs []error
	for i, t := range f.Tenants {
		if err := t.resolve(comments); err != nil {
			// A name that is none is not quoted: a secret pasted there,
			// or on the line below it (a plain scalar goes on over the
			// lines indented under it), would be shown.
			which := fmt.Sprintf("tenant %d", i+1)
			if offboard.TenantName.MatchString(t.Name) {
				which += fmt.Sprintf(" (%q)", t.Name)
			}
			errs = append(errs, fmt.Errorf("%s: %w", which, err))
			continue
		}
		if seen[t.Name] {
			errs = append(errs, fmt.Errorf("tenant %q: configured twice", t.Name))
		}
		seen[t.Name] = true
		app := [2]string{strings.ToLower(t.TenantID), strings.ToLower(t.ClientID)}
		if other, ok := apps[app]; ok && other != t.Name {
			errs = append(errs, fmt.Errorf("tenant %q: the same tenantId and clientId as tenant %q: the API's limits are per application and tenant, and each name would take the whole quota; use one name, or another application", t.Name, other))
		}
		apps[app] = t.Name
		if err := sameIdentity(identities, t); err != nil {
			errs = append(errs, err)
		}
		if err := sameGuards(guarded, t); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(firstOf(errs, func(n int) error { return errors.New(andMore(n)) })...)
}

// sameIdentity refuses a tenant whose managed identity another name of
// the file uses with another tenantId: the identity's tokens are of its
// own tenant, so both names would act in that one, a request to the one
// offboarding a device of the other past the other's guards. first holds
// each identity's first name. One tenantId twice is one application
// under two names, refused as such.
func sameIdentity(first map[string]*Tenant, t *Tenant) error {
	if !t.ManagedIdentity {
		return nil
	}
	id := strings.ToLower(t.ClientID)
	other, ok := first[id]
	switch {
	case !ok:
		first[id] = t
	case !strings.EqualFold(other.TenantID, t.TenantID):
		return fmt.Errorf("tenant %q: the same managed identity as tenant %q, with another tenantId: a managed identity gets tokens of its own tenant only, so both names would act in that one tenant; give the other tenant an application of its own", t.Name, other.Name)
	}
	return nil
}

// maxErrors is how many of a file's errors are given: a file wrong in
// every entry (a template's variable that expanded to nothing) gave one
// per tenant, megabytes on the one line --check-config and the log
// write, which a log pipeline cuts or drops.
const maxErrors = 10

// firstOf is the first maxErrors of s, and more's word for how many
// there are after them.
func firstOf[E any](s []E, more func(n int) E) []E {
	if len(s) <= maxErrors {
		return s
	}
	return append(slices.Clip(s[:maxErrors]), more(len(s)-maxErrors))
}

// andMore says how many errors were left out.
func andMore(n int) string { return fmt.Sprintf("and %d more", n) }

// checkUTF8 refuses a file that is not UTF-8, naming the line of its
// first byte that is none: the decoder's error (invalid trailing UTF-8
// octet) names no place, and a file saved as Windows-1252 holds such a
// byte wherever it has an accent. A file in UTF-16 begins with its byte
// order mark, and the decoder reads it.
func checkUTF8(data []byte) error {
	if bytes.HasPrefix(data, []byte{0xff, 0xfe}) || bytes.HasPrefix(data, []byte{0xfe, 0xff}) {
		return nil
	}
	for i := 0; i < len(data); {
		r, size := utf8.DecodeRune(data[i:])
		if r == utf8.RuneError && size == 1 {
			return fmt.Errorf("line %d: not UTF-8 (saved as Windows-1252 or Latin-1?): save the file as UTF-8", bytes.Count(data[:i], []byte("\n"))+1)
		}
		i += size
	}
	return nil
}

// cannotStartToken is the decoder's error for a character no YAML
// token begins with, a tab among them.
var cannotStartToken = regexp.MustCompile(`^yaml: line (\d+): found character that cannot start any token$`)

// tabIndent says, after the decoder's error err, that the line it names
// in data is indented with a tab: YAML indents with spaces only, and the
// decoder's "found character that cannot start any token" names no tab.
// "" for any other error.
func tabIndent(err error, data []byte) string {
	m := cannotStartToken.FindStringSubmatch(err.Error())
	if m == nil {
		return ""
	}
	n, _ := strconv.Atoi(m[1])
	lines := bytes.Split(data, []byte("\n"))
	if n < 1 || n > len(lines) {
		return ""
	}
	line := lines[n-1]
	indent := line[:len(line)-len(bytes.TrimLeft(line, " \t"))]
	if !bytes.ContainsRune(indent, '\t') {
		return ""
	}
	return fmt.Sprintf(": line %d is indented with a tab; YAML indents with spaces only", n)
}

// anotherDocument reports whether a document with content follows the
// one dec decoded. The decoder reads the first document only: a second
// one (two files put together) would be dropped without a word, and its
// tenants' requests answered unknown_tenant. An empty document (a
// trailing ---) holds nothing to drop.
func anotherDocument(dec *yaml.Decoder) bool {
	for {
		var doc yaml.Node
		err := dec.Decode(&doc)
		switch {
		case errors.Is(err, io.EOF):
			return false
		case err != nil:
			return true // not YAML, but not nothing either
		case len(doc.Content) > 0 && doc.Content[0].Tag != "!!null":
			return true
		}
	}
}

// noNulls refuses a key without a value (`requireInactiveFor:`, `~`,
// `null`) and an empty list item. The decoder leaves such a field as it
// was, so a guard whose value a template left out would be dropped
// without a word, and an empty tenant item would be a nil tenant. Nothing
// in the file means anything by null.
//
// A key that is null (~, null, a ? with no key) is refused too: the
// decoder drops its entry, value and all, where it refuses a key it does
// not know, so a limit written under one fell back to the defaults.
func noNulls(doc *yaml.Node) error {
	var key *yaml.Node
	n, path := walkNodes(doc, func(_, n *yaml.Node, _ string) bool {
		if n.Kind == yaml.MappingNode {
			for i := 0; i < len(n.Content); i += 2 {
				if n.Content[i].Tag == "!!null" {
					key = n.Content[i]
					return true
				}
			}
		}
		return n.Tag == "!!null"
	})
	switch {
	case key != nil && path == "":
		return fmt.Errorf("line %d: the file has a key of no name (~, null); name it or remove it", key.Line)
	case key != nil:
		return fmt.Errorf("line %d: %s has a key of no name (~, null); name it or remove it", key.Line, path)
	case n != nil:
		return fmt.Errorf("line %d: %s has no value; give it one or remove it", n.Line, path)
	}
	return nil
}

// checkScalars refuses the values the decoder reads as something else
// without a word: a null (noNulls), a map that replaces a merged one
// whole (noDeepMerges), and a fraction where a whole number goes
// (wholeCounts).
func checkScalars(data []byte) error {
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return nil //nolint:nilerr // not YAML: the decoder has said so already
	}
	if err := noNulls(&doc); err != nil {
		return err
	}
	if err := noDeepMerges(&doc); err != nil {
		return err
	}
	if err := noZeroTracking(&doc); err != nil {
		return err
	}
	if err := noEmptyBudget(&doc); err != nil {
		return err
	}
	return wholeCounts(&doc)
}

// noEmptyBudget refuses a guards.budget written as an empty string (a
// template's variable that expanded to nothing: budget: "{{ .budget }}"):
// the field cannot tell it from no budget, and the tenant's cap would be
// dropped without a word, as noNulls says of a key without a value. An
// alias is its anchor's value, and a map merged in (<<) is the guards'.
func noEmptyBudget(doc *yaml.Node) error {
	n, path := walkNodes(doc, func(_, n *yaml.Node, path string) bool {
		if n.Kind == yaml.AliasNode && n.Alias != nil {
			n = n.Alias
		}
		return n.Kind == yaml.ScalarNode && n.Tag == "!!str" && strings.TrimSpace(n.Value) == "" && strings.HasSuffix(strings.ReplaceAll(path, ".<<", ""), ".guards.budget")
	})
	if n != nil {
		return fmt.Errorf("line %d: %s is empty; give it a budget such as 500/24h, or remove it for none", n.Line, path)
	}
	return nil
}

// trackingKeys are the tracking's durations, each at least
// MinTrackingInterval.
var trackingKeys = []string{"firstCheck", "maxInterval", "maxAge"}

// noZeroTracking refuses a tracking duration written as 0: the decoder
// leaves 0 as no value, and the default (1m, 1h, 7 days) applied without
// a word, where 50ms is refused (maxAge: 0 meant to follow for ever, and
// stopped after a week). An alias is its anchor's value.
func noZeroTracking(doc *yaml.Node) error {
	n, path := walkNodes(doc, func(_, n *yaml.Node, path string) bool {
		if n.Kind == yaml.AliasNode && n.Alias != nil {
			n = n.Alias
		}
		parent, key, _ := cutLast(path)
		if n.Kind != yaml.ScalarNode || !strings.HasSuffix(parent, ".tracking") || !slices.Contains(trackingKeys, key) {
			return false
		}
		d, err := parseDuration(n.Value)
		return err == nil && d == 0
	})
	if n != nil {
		return fmt.Errorf("line %d: %s is 0; it must be at least %s (leave it out for its default)", n.Line, path, MinTrackingInterval)
	}
	return nil
}

// cutLast splits a path at its last '.': tenants[0].tracking and maxAge.
func cutLast(path string) (before, after string, found bool) {
	i := strings.LastIndex(path, ".")
	if i < 0 {
		return "", path, false
	}
	return path[:i], path[i+1:], true
}

// countKeys are the tenant's keys that hold a whole number.
var countKeys = []string{"maxInFlight", "spreadBurst"}

// wholeCounts refuses a number with a fraction under a key of countKeys:
// the decoder cuts the fraction off, so maxInFlight: 1.5 was 1, and
// spreadBurst: 0.5 turned the spreading off. A whole number written as a
// float (4.0) is that number. An alias is its anchor's value: anchored
// under another key (comment: &n 1.5), the fraction is not seen there.
func wholeCounts(doc *yaml.Node) error {
	n, path := walkNodes(doc, func(_, n *yaml.Node, path string) bool {
		var v float64
		if n.Kind == yaml.AliasNode && n.Alias != nil {
			n = n.Alias
		}
		return n.Tag == "!!float" && slices.Contains(countKeys, path[strings.LastIndex(path, ".")+1:]) &&
			(n.Decode(&v) != nil || v != math.Trunc(v))
	})
	if n != nil {
		return fmt.Errorf("line %d: %s is not a whole number", n.Line, path)
	}
	return nil
}

// aliased says whether an alias in the YAML document in data repeats
// the node n of that document as parsed by findNode. The two parses
// differ in their nodes: the anchor is known by its place.
func aliased(data []byte, n *yaml.Node) bool {
	a, _ := findNode(data, func(m *yaml.Node, _ string) bool {
		return m.Kind == yaml.AliasNode && m.Alias != nil && m.Alias.Line == n.Line && m.Alias.Column == n.Column
	})
	return a != nil
}

// findNode returns the first node of the YAML document in data (a
// scalar, a list or a map) for which match, given the node and its path,
// holds, with that path (tenants[0].guards.budget); nil and "" if none
// does, or data is not YAML (the decoder has said so already).
func findNode(data []byte, match func(n *yaml.Node, path string) bool) (*yaml.Node, string) {
	var doc yaml.Node
	if yaml.Unmarshal(data, &doc) != nil {
		return nil, ""
	}
	return walkNodes(&doc, func(_, n *yaml.Node, path string) bool { return match(n, path) })
}

// walkNodes calls visit for each node below the document doc, in
// document order (a map before its values), with the key that names it
// in its map (nil for a list's item) and its path, until visit says
// stop; it returns that node and path, nil and "" if none. A map's keys
// are not visited themselves. An alias is not followed: its anchor is
// visited where it stands.
func walkNodes(doc *yaml.Node, visit func(key, n *yaml.Node, path string) bool) (*yaml.Node, string) {
	var walk func(key, n *yaml.Node, path string) (*yaml.Node, string)
	walk = func(key, n *yaml.Node, path string) (*yaml.Node, string) {
		if n.Kind != yaml.DocumentNode && visit(key, n, path) {
			return n, path
		}
		for i, c := range n.Content {
			var m *yaml.Node
			var p string
			switch n.Kind {
			case yaml.MappingNode:
				if i%2 == 0 {
					continue
				}
				m, p = walk(n.Content[i-1], c, joinPath(path, n.Content[i-1].Value))
			case yaml.SequenceNode:
				m, p = walk(nil, c, fmt.Sprintf("%s[%d]", path, i))
			case yaml.DocumentNode:
				m, p = walk(nil, c, path)
			}
			if m != nil {
				return m, p
			}
		}
		return nil, ""
	}
	return walk(nil, doc, "")
}

// joinPath names a key below path, as in tenants[0].guards.budget.
func joinPath(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

// resolve checks a tenant entry and derives Resolved. Comment templates
// of the same text are parsed once, in comments, and shared: a parsed
// template takes about 1.5 KiB, and thousands of tenants mostly keep the
// default. A template is safe for concurrent use once parsed.
func (t *Tenant) resolve(comments map[string]*template.Template) error {
	var errs []error
	if !offboard.TenantName.MatchString(t.Name) {
		errs = append(errs, fmt.Errorf("name must match %s", offboard.TenantName))
	}
	if !guid.MatchString(t.TenantID) {
		errs = append(errs, errors.New("tenantId must be a GUID"))
	}
	switch {
	case t.ManagedIdentity && t.ClientID != "" && !guid.MatchString(t.ClientID):
		// It picks a user-assigned identity by its client id: anything
		// else was sent to the identity endpoint as one at the first call.
		errs = append(errs, errors.New("clientId must be a GUID: with managedIdentity, a user-assigned identity's client id, or none for the system-assigned identity"))
	case !guid.MatchString(t.ClientID) && !t.ManagedIdentity:
		errs = append(errs, errors.New("clientId must be a GUID"))
	}
	if err := t.Credential().Check(); err != nil {
		errs = append(errs, err)
	}
	c, err := mde.ResolveCloud(t.Cloud, t.APIBaseURL, t.AuthorityHost, t.Scope)
	if err != nil {
		errs = append(errs, err)
	}
	t.Resolved.Cloud = c
	if err == nil && apiPathInBase(c.APIBaseURL) {
		errs = append(errs, errors.New("apiBaseURL: its path ends in an API's path (/api/machines), or it has a path on Microsoft's host (/api, /api/v1.0), which serves the API at its root: the worker adds /api/... itself, and every call would go to /api/api/...; give the host alone, like https://api.securitycenter.microsoft.com"))
	}
	errs = append(errs, t.resolveLimits()...)

	text := t.Comment
	if text == "" {
		text = DefaultComment
	}
	if tmpl, ok := comments[text]; ok {
		t.Resolved.Comment = tmpl
	} else if tmpl, err := newComment(text); err != nil {
		errs = append(errs, fmt.Errorf("comment: %w", err))
	} else if err := checkLoops(tmpl); err != nil {
		errs = append(errs, err)
	} else {
		t.Resolved.Comment = tmpl
		if _, err := t.RenderComment(CommentData{}); err != nil {
			errs = append(errs, err)
		} else {
			comments[text] = tmpl
		}
	}
	if err := t.Guards.check(); err != nil {
		errs = append(errs, err)
	}
	errs = append(errs, t.checkConcurrency()...)
	errs = append(errs, t.Tracking.check()...)
	return errors.Join(errs...)
}

// apiPathInBase says whether the API base URL base (checked, without a
// final slash) ends in a whole API path (/api/machines, copied from the
// documentation), or has a path at all on one of Microsoft's hosts,
// which serve the API at their root: the /api the client puts before
// every path, or the documentation's versioned /api/v1.0. A gateway of
// one's own may serve the API under /api (and strip it), and a path with
// an api segment elsewhere (/api/mde) is no API path.
func apiPathInBase(base string) bool {
	_, path, _ := strings.Cut(strings.TrimPrefix(strings.TrimPrefix(base, "https://"), "http://"), "/")
	segs := strings.Split(strings.ToLower(path), "/")
	last := segs[len(segs)-1]
	return microsoftHost(base) && path != "" || len(segs) > 1 && segs[len(segs)-2] == "api" && slices.Contains(mde.APIs, last)
}

// microsoftHost says whether the API base URL base (checked) is on one of
// Microsoft's hosts, where the API's documented limits hold.
func microsoftHost(base string) bool {
	host, _, _ := strings.Cut(strings.TrimPrefix(strings.TrimPrefix(base, "https://"), "http://"), "/")
	host, _, _ = strings.Cut(strings.ToLower(host), ":")
	// A DNS name may end in its root's dot (api.securitycenter.microsoft.com.).
	host = strings.TrimSuffix(host, ".")
	return strings.HasSuffix(host, ".microsoft.com") || strings.HasSuffix(host, ".microsoft.us")
}

// apiCaseHint names the API a limits key written in another case is
// meant as (machineActions for machineactions), as spellingHint does for
// the other settings; empty for any other key.
func apiCaseHint(key string) string {
	for _, api := range mde.APIs {
		if strings.EqualFold(api, key) {
			return ": the APIs are case-sensitive; write " + api
		}
	}
	return ""
}

// resolveLimits reads the limits of each API, the defaults where none.
func (t *Tenant) resolveLimits() []error {
	var errs []error
	t.Resolved.Windows = map[string][]limiter.Window{}
	for api := range t.Limits {
		if !isAPI(api) {
			errs = append(errs, fmt.Errorf("limits: unknown API %q (want %s)%s", api, strings.Join(mde.APIs, ", "), apiCaseHint(api)))
		}
	}
	for _, api := range mde.APIs {
		specs, ok := t.Limits[api]
		if !ok {
			t.Resolved.Windows[api] = limiter.Default()
			continue
		}
		if len(specs) > MaxWindows {
			errs = append(errs, fmt.Errorf("limits.%s: more than %d limits; the API has two (100/1m, 1500/1h)", api, MaxWindows))
			continue
		}
		ws, err := limiter.ParseWindows(specs)
		if err != nil {
			errs = append(errs, fmt.Errorf("limits.%s: %w", api, err))
		}
		errs = append(errs, checkWindows(api, ws)...)
		if err == nil && microsoftHost(t.Resolved.Cloud.APIBaseURL) {
			if err := checkAPILimits(api, ws); err != nil {
				errs = append(errs, err)
			}
		}
		t.Resolved.Windows[api] = ws
	}
	return errs
}

func isAPI(name string) bool {
	for _, a := range mde.APIs {
		if a == name {
			return true
		}
	}
	return false
}
