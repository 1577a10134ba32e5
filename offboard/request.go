package offboard

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"reflect"
	"regexp"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"
)

// Limits of the contract.
const (
	// MaxRequestSize is the largest request body; a larger one is answered
	// invalid_request.
	MaxRequestSize = 64 << 10
	// MaxRequestHeaders is the room the request stream leaves for a
	// request's headers on top of its body: the stream's limit counts
	// both, and a 64 KiB request with its Nats-Msg-Id must be taken.
	MaxRequestHeaders = 4 << 10
	// MaxRequestMessage is the largest message the request stream
	// accepts; larger ones are refused at publish time.
	MaxRequestMessage = MaxRequestSize + MaxRequestHeaders
	// MaxCommentLength is the longest comment, in characters.
	MaxCommentLength = 1000
	// MaxLabelLength is the longest requestedBy or source, in characters.
	MaxLabelLength = 256
	// MaxMessageLength is the longest error message of a result, in
	// characters.
	MaxMessageLength = 1000
	// MaxDNSNameLength is the longest computerDnsName, in bytes.
	MaxDNSNameLength = 255
)

// Request is an offboard request as published.
type Request struct {
	RequestID       string `json:"requestId"`
	MachineID       string `json:"machineId,omitempty"`
	ComputerDNSName string `json:"computerDnsName,omitempty"`
	Comment         string `json:"comment,omitempty"`
	Tenant          string `json:"tenant,omitempty"`
	RequestedBy     string `json:"requestedBy,omitempty"`
	Source          string `json:"source,omitempty"`
	DryRun          bool   `json:"dryRun,omitempty"`
	// Attempt is 1 (or 0, meaning 1) for a first request; a higher
	// attempt retries a request whose stored result is failed.
	Attempt int `json:"attempt,omitempty"`
	// NotSeenSince, when set, is the premise the request was made on:
	// Defender has not seen the device since. The device is offboarded
	// only if its lastSeen, as the worker reads it before the call, is not
	// in a later second than this time (a campaign row carries its plan's
	// lastSeen, whose fractions a spreadsheet may have cut or rounded).
	NotSeenSince time.Time `json:"notSeenSince,omitzero"`
}

// AttemptOrFirst is the request's attempt, 1 when not given.
func (r Request) AttemptOrFirst() int { return max(r.Attempt, 1) }

// The forms are checked byte by byte: a request is parsed once by the
// worker and once by every publisher that checks before it sends.

// ValidRequestID says whether id has the form of a request id:
// [A-Za-z0-9._:-]{1,128}.
func ValidRequestID(id string) bool {
	if len(id) < 1 || len(id) > 128 {
		return false
	}
	for i := 0; i < len(id); i++ {
		if c := id[i]; !isAlnum(c) && c != '.' && c != '_' && c != ':' && c != '-' {
			return false
		}
	}
	return true
}

// ValidDNSName says whether name has the form of a computerDnsName: at
// most MaxDNSNameLength bytes, labels of letters, digits, '-' and '_' (1
// to 63, not starting with '-'), joined by dots, with an optional final
// dot.
func ValidDNSName(name string) bool { return len(name) <= MaxDNSNameLength && validDNSName(name) }

// validDNSName: labels of letters, digits, '-' and '_' (1 to 63, not
// starting with '-'), joined by dots, with an optional final dot.
func validDNSName(name string) bool {
	name = strings.TrimSuffix(name, ".")
	if name == "" {
		return false
	}
	for label := range strings.SplitSeq(name, ".") {
		if len(label) < 1 || len(label) > 63 || label[0] == '-' {
			return false
		}
		for i := 0; i < len(label); i++ {
			if c := label[i]; !isAlnum(c) && c != '_' && c != '-' {
				return false
			}
		}
	}
	return true
}

func isAlnum(c byte) bool {
	return c >= '0' && c <= '9' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z'
}

func isHex(c byte) bool { return c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F' }

// ValidMachineID says whether id has the form of a device id: 40
// hexadecimal characters.
func ValidMachineID(id string) bool {
	if len(id) != 40 {
		return false
	}
	for i := 0; i < len(id); i++ {
		if !isHex(id[i]) {
			return false
		}
	}
	return true
}

var fieldNames = []string{"requestId", "machineId", "computerDnsName", "comment", "tenant", "requestedBy", "source", "dryRun", "attempt", "notSeenSince"}

// wire is a request as decoded, before its fields are checked.
type wire struct {
	RequestID       string `json:"requestId"`
	MachineID       string `json:"machineId"`
	ComputerDNSName string `json:"computerDnsName"`
	Comment         string `json:"comment"`
	Tenant          string `json:"tenant"`
	RequestedBy     string `json:"requestedBy"`
	Source          string `json:"source"`
	DryRun          bool   `json:"dryRun"`
	Attempt         *int   `json:"attempt"`
	NotSeenSince    string `json:"notSeenSince"`
}

// ParseRequest reads and checks a request published on subjectTenant's
// subject. On error, the returned request holds only the fields that
// passed their own check (so an answer never echoes what was refused), and
// the error says which field is wrong and why, showing at most a short,
// escaped part of the input.
func ParseRequest(data []byte, subjectTenant string) (Request, error) {
	if len(data) > MaxRequestSize {
		return Request{}, fmt.Errorf("request is %d bytes, more than %d", len(data), MaxRequestSize)
	}
	// UTF-32 first: its little-endian byte order mark begins as UTF-16's
	// does, and its first character holds a zero byte beside an ASCII one.
	if bytes.HasPrefix(data, []byte{0xff, 0xfe, 0, 0}) || bytes.HasPrefix(data, []byte{0, 0, 0xfe, 0xff}) {
		return Request{}, errors.New("request is UTF-32, not UTF-8 (it starts with a UTF-32 byte order mark)")
	}
	if unmarkedUTF32(data) {
		return Request{}, errors.New("request is UTF-32, not UTF-8 (it has no byte order mark, and its first character is three zero bytes beside an ASCII one)")
	}
	if bytes.HasPrefix(data, []byte{0xff, 0xfe}) || bytes.HasPrefix(data, []byte{0xfe, 0xff}) {
		return Request{}, errors.New("request is UTF-16, not UTF-8 (it starts with a UTF-16 byte order mark)")
	}
	if unmarkedUTF16(data) {
		return Request{}, errors.New("request is UTF-16, not UTF-8 (it has no byte order mark, and its first character is a zero byte beside an ASCII one)")
	}
	if !utf8.Valid(data) {
		return Request{}, errors.New("request is not UTF-8")
	}
	if at := loneSurrogate(data); at >= 0 {
		return Request{}, fmt.Errorf("request is not UTF-8 text: the escape %s at byte %d is half of a surrogate pair, no character", data[at:at+6], at)
	}
	var w wire
	if refused, err := checkMembers(data); err != nil {
		_ = json.Unmarshal(data, &w) // best effort: only to keep checked fields for the answer
		w.drop(refused)
		r, _ := w.check(subjectTenant)
		return r, err
	}
	if err := json.Unmarshal(data, &w); err != nil {
		r, _ := w.check(subjectTenant)
		return r, fmt.Errorf("request is not a JSON object of the documented form: %s", jsonProblem(err))
	}
	if err := nestedDryRun(data); err != nil {
		r, _ := w.check(subjectTenant)
		return r, err
	}
	return w.check(subjectTenant)
}

// nestedDryRun refuses a member named dryRun, in any case or naming
// style, inside the value of another member, at any depth, in an array
// too: {"options": {"dryRun": true}} was meant as a dry run, and the
// member that holds it, unknown, would be ignored and the device
// offboarded. data is a well-formed request, at most maxJSONDepth deep.
//
// It reads the member names off the bytes, the values unread: a
// publisher's own metadata may fill the 64 KiB, and decoding every value
// made such a request several times slower to read. No name is passed
// over that could stand for dryRun (mayNameDryRun).
func nestedDryRun(data []byte) error {
	depth := 0
	top, topField := "", false // the top-level member being read; whether it is a field
	for i := 0; i < len(data); i++ {
		switch data[i] {
		case '{', '[':
			depth++
		case '}', ']':
			depth--
		case '"':
			start := i
			end, _, ok := stringEnd(data, start)
			if !ok { // not expected: the JSON reader has read data whole
				return errors.New("request is not a JSON object of the documented form")
			}
			i = end - 1
			if j := skipSpace(data, end); j >= len(data) || data[j] != ':' {
				continue // a value, no member name
			}
			if depth == 1 {
				top, _, _ = scanString(data, start)
				topField = FieldNamed(top) != "" // a field (or one in another style, refused as such): no object
				continue
			}
			if topField || !mayNameDryRun(data[start:end]) {
				continue
			}
			if name, _, _ := scanString(data, start); FieldNamed(name) == "dryRun" {
				return fmt.Errorf("member %s holds a member %s: dryRun is read at the request's top level alone, write it there", Quote(top), Quote(name))
			}
		}
	}
	return nil
}

// mayNameDryRun says whether raw, a member name as a JSON string with its
// quotes, may be one FieldNamed reads as dryRun: it holds an escape, or
// the letters of dryRun in order, in any case. None of d, r, y, u and n
// has another form under Unicode case folding, and what FieldNamed sets
// aside (separators, "is") only adds to a name: false is only for a name
// that cannot stand for dryRun.
func mayNameDryRun(raw []byte) bool {
	const letters = "dryrun"
	k := 0
	for _, c := range raw {
		if c == '\\' {
			return true
		}
		if k < len(letters) && c|0x20 == letters[k] {
			k++
		}
	}
	return k == len(letters)
}

// unmarkedUTF16 says whether data is UTF-16 without a byte order mark,
// as .NET's Encoding.Unicode.GetBytes and Python's "utf-16-le" write it:
// its first character, ASCII in a JSON text, takes two bytes, one of them
// zero. UTF-8 JSON has no zero byte, so a request of this form was never
// a valid one; the JSON reader would call it a syntax error at byte 1,
// and the publisher would look for it in the JSON.
func unmarkedUTF16(data []byte) bool {
	return len(data) >= 2 && (data[0] == 0) != (data[1] == 0) && data[0] < utf8.RuneSelf && data[1] < utf8.RuneSelf
}

// unmarkedUTF32 says whether data is UTF-32 without a byte order mark,
// as .NET's Encoding.UTF32.GetBytes writes it (little-endian), or its
// big-endian form: its first character, ASCII in a JSON text, takes four
// bytes, three of them zero. Read as UTF-16, or as UTF-8 (a syntax error
// at byte 1), the publisher would be sent looking for the wrong fault.
func unmarkedUTF32(data []byte) bool {
	if len(data) < 4 {
		return false
	}
	le := data[0] != 0 && data[0] < utf8.RuneSelf && data[1] == 0 && data[2] == 0 && data[3] == 0
	be := data[0] == 0 && data[1] == 0 && data[2] == 0 && data[3] != 0 && data[3] < utf8.RuneSelf
	return le || be
}

// loneSurrogate finds a \u escape that stands for half of a UTF-16
// surrogate pair without its other half, and returns its byte offset (-1:
// none). Such an escape is no character: encoding/json reads it as U+FFFD,
// as it reads invalid UTF-8, while other readers keep it or refuse it, so
// the text the worker would record and send is not the text published.
// Backslashes stand only in strings of a well-formed request; a malformed
// escape is left to the JSON reader to report.
func loneSurrogate(data []byte) int {
	for i := 0; i < len(data); {
		k := bytes.IndexByte(data[i:], '\\')
		if k < 0 {
			break
		}
		i += k
		r, ok := escapedRune(data, i)
		switch {
		case !ok:
			i += 2 // another escape: \\, \", \n, ...
			continue
		case r >= 0xdc00 && r <= 0xdfff:
			return i
		case r >= 0xd800 && r <= 0xdbff:
			if low, ok := escapedRune(data, i+6); !ok || low < 0xdc00 || low > 0xdfff {
				return i
			}
			i += 12
			continue
		}
		i += 6
	}
	return -1
}

// escapedRune reads the \uXXXX escape at data[i]; false when there is none.
func escapedRune(data []byte, i int) (rune, bool) {
	if i+6 > len(data) || data[i] != '\\' || data[i+1] != 'u' {
		return 0, false
	}
	var r rune
	for _, c := range data[i+2 : i+6] {
		var d byte
		switch {
		case c >= '0' && c <= '9':
			d = c - '0'
		case c >= 'a' && c <= 'f':
			d = c - 'a' + 10
		case c >= 'A' && c <= 'F':
			d = c - 'A' + 10
		default:
			return 0, false
		}
		r = r<<4 | rune(d)
	}
	return r, true
}

// check checks each field on its own, keeps those that pass, and returns
// the first problem in field order.
func (w wire) check(subjectTenant string) (Request, error) {
	var r Request
	var errs []error
	keep := func(dst *string, v string, err error) {
		if err != nil {
			errs = append(errs, err)
			return
		}
		*dst = v
	}
	keep(&r.RequestID, w.RequestID, checkRequestID(w.RequestID))
	keep(&r.MachineID, strings.ToLower(w.MachineID), checkMachineID(w.MachineID))
	keep(&r.ComputerDNSName, w.ComputerDNSName, checkDNSName(w.ComputerDNSName))
	keep(&r.Comment, w.Comment, checkText("comment", w.Comment, MaxCommentLength))
	if strings.TrimSpace(r.Comment) == "" {
		// White space alone says nothing, and the API refuses it as a
		// missing comment: it counts as absent, like "", and the tenant's
		// template gives the comment.
		r.Comment = ""
	}
	keep(&r.Tenant, w.Tenant, checkTenant(w.Tenant, subjectTenant))
	keep(&r.RequestedBy, w.RequestedBy, checkText("requestedBy", w.RequestedBy, MaxLabelLength))
	keep(&r.Source, w.Source, checkText("source", w.Source, MaxLabelLength))
	r.DryRun = w.DryRun
	if w.Attempt != nil && *w.Attempt < 1 {
		errs = append(errs, fmt.Errorf("attempt must be at least 1, not %d", *w.Attempt))
	} else if w.Attempt != nil {
		r.Attempt = *w.Attempt
	}
	if w.NotSeenSince != "" {
		since, err := ParseNotSeenSince("notSeenSince", w.NotSeenSince)
		if err != nil {
			errs = append(errs, err)
		} else {
			r.NotSeenSince = since
		}
	}
	switch {
	case w.MachineID != "" && w.ComputerDNSName != "":
		errs = append(errs, errors.New("give machineId or computerDnsName, not both"))
	case w.MachineID == "" && w.ComputerDNSName == "":
		errs = append(errs, errors.New("machineId or computerDnsName is required"))
	}
	if len(errs) > 0 {
		return r, errs[0]
	}
	return r, nil
}

// EarliestNotSeenSince is the earliest notSeenSince taken: Defender for
// Endpoint came out in 2016, and a device's lastSeen before 2000 is a
// placeholder for a device never seen (.NET's 0001-01-01), not a
// sighting. An earlier time is a mistake (a cell read as a number, a
// zero time), and every device would be refused under it.
var EarliestNotSeenSince = time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC)

// ClockSkew is how far a publisher's clock and the worker's may disagree:
// a notSeenSince later than the worker's now by more is refused
// (Request.CheckTime).
const ClockSkew = 5 * time.Minute

// rfc3339 is the form of an RFC 3339 date-time (section 5.6), as JSON
// Schema's date-time format takes it: T and Z in either case, a fraction
// of any length, a numeric offset with its colon.
var rfc3339 = regexp.MustCompile(`^[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt][0-9]{2}:[0-9]{2}:[0-9]{2}(?:\.[0-9]+)?(?:[Zz]|[+-][0-9]{2}:[0-9]{2})$`)

// ParseNotSeenSince reads a notSeenSince: an RFC 3339 date-time (a leap
// second too, 23:59:60 in UTC, read as the next second) not before
// EarliestNotSeenSince. field names the value in the error (a campaign's
// CSV calls it lastSeen), which shows it quoted.
func ParseNotSeenSince(field, s string) (time.Time, error) {
	bad := func(why string) (time.Time, error) {
		return time.Time{}, fmt.Errorf("%s %s %s", field, Quote(s), why)
	}
	if !rfc3339.MatchString(s) {
		return bad("is not an RFC 3339 time (2026-08-01T09:12:00Z)")
	}
	v := strings.ToUpper(s)
	if off := v[len(v)-6:]; off[0] == '+' || off[0] == '-' {
		if off[1:3] > "23" || off[4:6] > "59" {
			return bad("has an offset out of range")
		}
	}
	leap := v[17:19] == "60"
	if leap {
		v = v[:17] + "59" + v[19:]
	}
	t, err := time.Parse(time.RFC3339Nano, v)
	if err != nil {
		return bad("is not a time: its date or time is out of range")
	}
	if leap {
		if u := t.UTC(); u.Hour() != 23 || u.Minute() != 59 {
			return bad("is not a time: a leap second is 23:59:60 in UTC")
		}
		t = t.Add(time.Second)
	}
	if t.Before(EarliestNotSeenSince) {
		return bad("is before 2000: no device was seen then")
	}
	return t, nil
}

// CheckTime makes the checks of a parsed request that need the time
// (now, by the reader's clock): a notSeenSince later than now by more
// than ClockSkew is refused, as under it every device seen until now
// would be offboarded: the premise says nothing.
func (r Request) CheckTime(now time.Time) error {
	if r.NotSeenSince.After(now.Add(ClockSkew)) {
		return fmt.Errorf("notSeenSince %s is in the future", r.NotSeenSince.Format(time.RFC3339Nano))
	}
	return nil
}

func checkRequestID(id string) error {
	switch {
	case id == "":
		return errors.New("requestId is missing")
	case !ValidRequestID(id):
		return fmt.Errorf("requestId %s does not match [A-Za-z0-9._:-]{1,128}", Quote(id))
	}
	return nil
}

func checkMachineID(id string) error {
	if id != "" && !ValidMachineID(id) {
		return fmt.Errorf("machineId %s is not 40 hexadecimal characters", Quote(id))
	}
	return nil
}

func checkDNSName(name string) error {
	if name != "" && (len(name) > MaxDNSNameLength || !validDNSName(name)) {
		return fmt.Errorf("computerDnsName %s is not a DNS name", Quote(name))
	}
	return nil
}

func checkTenant(tenant, subjectTenant string) error {
	if tenant != "" && tenant != subjectTenant {
		return fmt.Errorf("tenant %s does not match the subject's tenant %s", Quote(tenant), Quote(subjectTenant))
	}
	return nil
}

// checkText refuses text longer than limit characters or holding a
// character one does not see (Unseen: a control or format character, a
// Hangul filler, a variation selector on its own), which could hide what
// a log line, an audit record or an approval screen shows, or a line or
// paragraph separator (U+2028, U+2029), which breaks a line as a newline
// does. The error names the first such character by its code point and
// place, not the text.
func checkText(field, v string, limit int) error {
	if n := utf8.RuneCountInString(v); n > limit {
		return fmt.Errorf("%s has %d characters, more than %d", field, n, limit)
	}
	r, at := firstHidden(v)
	if sep := strings.IndexAny(v, "\u2028\u2029"); sep >= 0 && (at < 0 || sep < at) {
		r, _ = utf8.DecodeRuneInString(v[sep:])
		at = sep
	}
	if at >= 0 {
		return fmt.Errorf("%s holds control or formatting characters: U+%04X at character %d", field, r, utf8.RuneCountInString(v[:at])+1)
	}
	return nil
}

// Unseen says whether r is a character one does not see: a control
// character, a format character (a bidirectional override, a zero-width
// space, a byte order mark, a soft hyphen, a joiner), or another that
// Unicode says to ignore when not rendered (a variation selector, a
// combining grapheme joiner, a Hangul filler). The request's texts
// (Hidden) and the guards' names (config.Visible) go by it.
func Unseen(r rune) bool {
	if r < utf8.RuneSelf {
		return r < 0x20 || r == 0x7f // of ASCII, only its controls
	}
	return unicode.IsControl(r) || unicode.In(r, unicode.Cf, unicode.Variation_Selector, unicode.Other_Default_Ignorable_Code_Point)
}

// Hidden says whether s holds a character one does not see (Unseen),
// other than a zero-width non-joiner or joiner inside a word or an emoji
// sequence, and a variation selector that gives the letter or symbol
// before it its form (an emoji's, an ideograph's) or makes a keycap
// (1\ufe0f\u20e3): Persian and the Indic scripts spell words with the
// joiners, and emoji are written with them.
func Hidden(s string) bool {
	_, at := firstHidden(s)
	return at >= 0
}

// firstHidden is the first character of s that Hidden refuses, and its
// byte offset; -1 when there is none.
func firstHidden(s string) (rune, int) {
	prev := rune(-1) // none
	for i, r := range s {
		if !Unseen(r) {
			prev = r
			continue
		}
		next, size := utf8.DecodeRuneInString(s[i+utf8.RuneLen(r):])
		switch {
		case (r == '\u200c' || r == '\u200d') && prev >= 0 && size > 0 && joined(prev) && joined(next):
		case unicode.Is(unicode.Variation_Selector, r) && prev >= 0 && joined(prev) && !unicode.Is(unicode.Variation_Selector, prev):
		case r == '\ufe0f' && (prev >= '0' && prev <= '9' || prev == '#' || prev == '*') && next == '\u20e3':
		default:
			return r, i
		}
		prev = r
	}
	return 0, -1
}

// joined says whether a joiner next to r can be part of a word or an
// emoji sequence: r is a letter, mark or symbol beyond ASCII.
func joined(r rune) bool {
	return r > unicode.MaxASCII && (unicode.IsLetter(r) || unicode.IsMark(r) || unicode.IsSymbol(r))
}

// checkMembers refuses what encoding/json would read differently from a
// case-sensitive reader (an approval step, an audit): a member that repeats,
// or one that differs from a field name only in case ({"DryRun": false}
// next to {"dryRun": true}); and a member written as a field's name in
// another naming style ({"dry_run": true}), which its publisher meant as
// the field. Other unknown members are ignored. refused
// names the fields such members stand for: which of their values
// encoding/json keeps is not what the request says, so none is echoed.
func checkMembers(data []byte) (refused map[string]bool, err error) {
	keys, ok := memberNames(data)
	if !ok {
		return checkMembersSlow(data)
	}
	j := memberJudge{refused: map[string]bool{}, seen: map[string]bool{}}
	for _, key := range keys {
		j.judge(key)
	}
	return j.refused, j.err
}

// withoutSeparators is name without the separators other naming styles
// put between words ("dry_run", "dry-run", "dry.run", "dry run"), and
// without the characters one does not see (Unseen: "dry\u200bRun" reads
// dryRun on a screen, in an approval or an audit). Such a member is
// meant as the field: ignored as an unknown one, a publisher's
// {"dry_run": true} would make a real offboard.
func withoutSeparators(name string) string {
	if !strings.ContainsFunc(name, isSeparator) {
		return name
	}
	return strings.Map(func(r rune) rune {
		if isSeparator(r) {
			return -1
		}
		return r
	}, name)
}

// isSeparator: '_', '.', a hyphen or dash of any kind or a minus sign
// (the non-breaking hyphen or en dash a word processor writes for '-'), a
// space of any kind (a no-break space, as a spreadsheet writes in a
// header cell), or a character one does not see.
func isSeparator(r rune) bool {
	return r == '_' || r == '-' || r == '.' || unicode.IsSpace(r) || Unseen(r) ||
		r > unicode.MaxASCII && (unicode.Is(unicode.Pd, r) || r == '\u2212')
}

// memberJudge applies the member rules one name at a time.
type memberJudge struct {
	refused map[string]bool
	seen    map[string]bool
	err     error
}

// FieldNamed is the request field that name stands for, written in any
// case or naming style ("dry_run", "Dry-Run", "DRYRUN" stand for
// "dryRun"; "_comment" and "source_" stand for none), or, for the flag dryRun, with "is" before it as C# and Java
// name flags ("isDryRun", "is_dry_run"); "" when it stands for none.
func FieldNamed(name string) string {
	// A name that begins or ends with a visible separator ("_comment",
	// "source_") is one of its own by convention (a JSON comment, a
	// private or reserved member: Elasticsearch's "_source"), not the
	// field written in another style; spaces and characters one does
	// not see there still do not count.
	trimmed := strings.TrimFunc(name, func(r rune) bool { return unicode.IsSpace(r) || Unseen(r) })
	if first, _ := utf8.DecodeRuneInString(trimmed); trimmed != "" && isSeparator(first) {
		return ""
	}
	if last, _ := utf8.DecodeLastRuneInString(trimmed); trimmed != "" && isSeparator(last) {
		return ""
	}
	bare := withoutSeparators(name)
	for _, f := range fieldNames {
		if strings.EqualFold(bare, f) {
			return f
		}
	}
	if rest, ok := cutFoldPrefix(bare, "is"); ok && strings.EqualFold(rest, "dryRun") {
		return "dryRun"
	}
	return ""
}

// cutFoldPrefix is s without prefix, which s starts with in any case (as
// strings.EqualFold compares: the long s U+017F for s too).
func cutFoldPrefix(s, prefix string) (string, bool) {
	n := 0
	for i := range s {
		if n == len(prefix) {
			return s[i:], strings.EqualFold(s[:i], prefix)
		}
		n++
	}
	return "", false
}

func (j *memberJudge) judge(key string) {
	field, bare := FieldNamed(key), withoutSeparators(key)
	var problem error
	switch {
	case j.seen[key]:
		problem = fmt.Errorf("member %s appears twice", Quote(key))
	case field != "" && !strings.EqualFold(bare, field):
		problem = fmt.Errorf("member %s: a flag's name is written without \"is\" before it: write %q", Quote(key), field)
	case field != "" && strings.ContainsFunc(key, Unseen):
		problem = fmt.Errorf("member %s holds a character one does not see: write %q", Quote(key), field)
	case field != "" && bare != key:
		problem = fmt.Errorf("member %s: field names are written in camel case, without separators: write %q", Quote(key), field)
	case field != "" && key != field:
		problem = fmt.Errorf("member %s: field names are case-sensitive, write %q", Quote(key), field)
	}
	j.seen[key] = true
	if problem != nil {
		if field != "" {
			j.refused[field] = true
		}
		if j.err == nil {
			j.err = problem
		}
	}
}

// checkMembersSlow is checkMembers with encoding/json's tokenizer: the
// path of input the quick scan does not take, and the one that names a
// syntax error's place.
func checkMembersSlow(data []byte) (map[string]bool, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	if tok, err := dec.Token(); err != nil || tok != json.Delim('{') {
		return nil, fmt.Errorf("request is not a JSON object of the documented form: %s", notAnObject(data, tok, err))
	}
	j := memberJudge{refused: map[string]bool{}, seen: map[string]bool{}}
	for dec.More() {
		tok, terr := dec.Token()
		if terr != nil {
			return j.refused, fmt.Errorf("request is not a JSON object of the documented form: %s", jsonProblem(terr))
		}
		key, _ := tok.(string)
		j.judge(key)
		var skip json.RawMessage
		if derr := dec.Decode(&skip); derr != nil {
			return j.refused, fmt.Errorf("request is not a JSON object of the documented form: %s", jsonProblem(derr))
		}
	}
	return j.refused, j.err
}

// notAnObject says what a request that does not start as a JSON object
// is, from its first token tok (or the error reading it): the publisher
// of an empty body, of a byte order mark before the JSON (which .NET and
// PowerShell write unless told not to) or of a JSON value of another kind
// learns what to change.
func notAnObject(data []byte, tok json.Token, err error) string {
	switch {
	case len(bytes.TrimLeft(data, " \t\r\n")) == 0:
		return "it is empty"
	case bytes.HasPrefix(data, []byte("\ufeff")):
		return "it starts with a byte order mark (U+FEFF): send the JSON without one"
	case err != nil:
		return jsonProblem(err)
	}
	switch tok.(type) {
	case json.Delim:
		return "it is a JSON array"
	case string:
		return "it is a JSON string"
	case float64:
		return "it is a JSON number"
	case bool:
		return "it is a JSON boolean"
	}
	return "it is null"
}

// drop forgets the fields named, so that they are not echoed.
func (w *wire) drop(fields map[string]bool) {
	for f := range fields {
		switch f {
		case "requestId":
			w.RequestID = ""
		case "machineId":
			w.MachineID = ""
		case "computerDnsName":
			w.ComputerDNSName = ""
		case "comment":
			w.Comment = ""
		case "tenant":
			w.Tenant = ""
		case "requestedBy":
			w.RequestedBy = ""
		case "source":
			w.Source = ""
		case "dryRun":
			w.DryRun = false
		case "attempt":
			w.Attempt = nil
		case "notSeenSince":
			w.NotSeenSince = ""
		}
	}
}

// Quote shows at most 48 characters of untrusted input, escaped, for a
// message or a log line.
func Quote(s string) string {
	if utf8.RuneCountInString(s) > 48 {
		s = string([]rune(s)[:48]) + "…"
	}
	return fmt.Sprintf("%+q", s)
}

// maxJSONDepth is how deep encoding/json reads nested values; a deeper
// request is refused, whatever member holds them.
const maxJSONDepth = 10000

func jsonProblem(err error) string {
	var syntax *json.SyntaxError
	var typ *json.UnmarshalTypeError
	switch {
	case errors.As(err, &syntax) && strings.HasSuffix(syntax.Error(), "exceeded max depth"):
		// Well-formed, but deeper than Go's JSON reader goes: not a
		// syntax error, which the publisher would look for in vain.
		return fmt.Sprintf("values nested more than %d levels deep (at byte %d)", maxJSONDepth, syntax.Offset)
	case errors.As(err, &syntax):
		return fmt.Sprintf("syntax error at byte %d", syntax.Offset)
	case errors.As(err, &typ) && typ.Field == "attempt" && strings.HasPrefix(typ.Value, "number "):
		return attemptProblem(strings.TrimPrefix(typ.Value, "number "))
	case errors.As(err, &typ):
		return fmt.Sprintf("field %s must be %s", typ.Field, jsonKind(typ.Type))
	}
	return "unreadable JSON"
}

// attemptProblem says what is wrong with an attempt that is a JSON number
// but no int: a fraction, a whole number out of its range, or a whole
// number in it written with a fraction or an exponent (2.0, 1e3), which
// is refused too, as the contract's attempt is an integer.
func attemptProblem(lit string) string {
	shown := lit
	if len(shown) > 48 {
		shown = shown[:48] + "…" // a JSON number: ASCII alone
	}
	whole, fits := wholeNumber(lit)
	switch {
	case !whole:
		return "field attempt must be a whole number, not " + shown
	case !fits:
		return fmt.Sprintf("field attempt %s is out of range: it must be from 1 to %d", shown, math.MaxInt)
	}
	return fmt.Sprintf("field attempt %s is a whole number written with a fraction or an exponent: write it in digits alone", shown)
}

// wholeNumber says whether lit, a well-formed JSON number, is a whole
// number, and if so whether it is an attempt's: from 1 to the largest int. It reads the digits rather
// than converting the number, which a float would round and an exponent
// of millions would make slow.
func wholeNumber(lit string) (whole, fits bool) {
	neg := strings.HasPrefix(lit, "-")
	mant, exp, _ := strings.Cut(strings.ToLower(strings.TrimPrefix(lit, "-")), "e")
	intPart, frac, _ := strings.Cut(mant, ".")
	const far = 1 << 40 // beyond any digits a request can hold
	e, err := strconv.ParseInt(exp, 10, 64)
	switch {
	case exp == "":
		e = 0
	case err != nil || e > far || e < -far:
		e = far
		if strings.HasPrefix(exp, "-") {
			e = -far
		}
	}
	digits := strings.TrimLeft(intPart+frac, "0")
	e -= int64(len(frac))
	trimmed := strings.TrimRight(digits, "0")
	e += int64(len(digits) - len(trimmed))
	switch {
	case trimmed == "":
		return true, false // zero
	case e < 0:
		return false, false
	case int64(len(trimmed))+e > 19:
		return true, false
	}
	v := trimmed + strings.Repeat("0", int(e))
	if neg {
		v = "-" + v
	}
	n, err := strconv.ParseInt(v, 10, strconv.IntSize)
	return true, err == nil && n >= 1
}

// jsonKind names, in JSON's words, what a request's field of type t
// holds: "a whole number", not Go's "a int".
func jsonKind(t reflect.Type) string {
	switch t.Kind() {
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return "a whole number"
	case reflect.Bool:
		return "a boolean (true or false)"
	case reflect.String:
		return "a string"
	}
	return "a " + t.Kind().String()
}
