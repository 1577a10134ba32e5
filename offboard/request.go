package offboard

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"strings"
	"unicode"
	"unicode/utf8"
)

// Limits of the contract.
const (
	// MaxRequestSize is the largest request the request stream accepts;
	// larger ones are refused at publish time.
	MaxRequestSize = 64 << 10
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
}

// AttemptOrFirst is the request's attempt, 1 when not given.
func (r Request) AttemptOrFirst() int { return max(r.Attempt, 1) }

var (
	requestIDForm = regexp.MustCompile(`^[A-Za-z0-9._:-]{1,128}$`)
	machineIDForm = regexp.MustCompile(`^[0-9a-fA-F]{40}$`)
	// A DNS name: labels of letters, digits, '-' and '_', joined by dots.
	dnsNameForm = regexp.MustCompile(`^[A-Za-z0-9_]([A-Za-z0-9_-]{0,62})(\.[A-Za-z0-9_]([A-Za-z0-9_-]{0,62}))*\.?$`)
)

// ValidMachineID says whether id has the form of a device id: 40
// hexadecimal characters.
func ValidMachineID(id string) bool { return machineIDForm.MatchString(id) }

var fieldNames = []string{"requestId", "machineId", "computerDnsName", "comment", "tenant", "requestedBy", "source", "dryRun", "attempt"}

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
	if !utf8.Valid(data) {
		return Request{}, errors.New("request is not UTF-8")
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
	return w.check(subjectTenant)
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
	keep(&r.Tenant, w.Tenant, checkTenant(w.Tenant, subjectTenant))
	keep(&r.RequestedBy, w.RequestedBy, checkText("requestedBy", w.RequestedBy, MaxLabelLength))
	keep(&r.Source, w.Source, checkText("source", w.Source, MaxLabelLength))
	r.DryRun = w.DryRun
	if w.Attempt != nil && *w.Attempt < 1 {
		errs = append(errs, fmt.Errorf("attempt must be at least 1, not %d", *w.Attempt))
	} else if w.Attempt != nil {
		r.Attempt = *w.Attempt
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

func checkRequestID(id string) error {
	switch {
	case id == "":
		return errors.New("requestId is missing")
	case !requestIDForm.MatchString(id):
		return fmt.Errorf("requestId %s does not match [A-Za-z0-9._:-]{1,128}", Quote(id))
	}
	return nil
}

func checkMachineID(id string) error {
	if id != "" && !machineIDForm.MatchString(id) {
		return fmt.Errorf("machineId %s is not 40 hexadecimal characters", Quote(id))
	}
	return nil
}

func checkDNSName(name string) error {
	if name != "" && (len(name) > MaxDNSNameLength || !dnsNameForm.MatchString(name)) {
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

// checkText refuses text longer than limit characters or holding control
// or bidirectional formatting characters, which could hide what a log line
// or an approval screen shows.
func checkText(field, v string, limit int) error {
	if n := utf8.RuneCountInString(v); n > limit {
		return fmt.Errorf("%s has %d characters, more than %d", field, n, limit)
	}
	if strings.IndexFunc(v, unprintable) >= 0 {
		return fmt.Errorf("%s holds control or formatting characters", field)
	}
	return nil
}

// unprintable: control characters and format characters (bidirectional
// overrides, zero-width joiners and the like).
func unprintable(r rune) bool { return unicode.IsControl(r) || unicode.Is(unicode.Cf, r) }

// checkMembers refuses what encoding/json would read differently from a
// case-sensitive reader (an approval step, an audit): a member that repeats,
// or one that differs from a field name only in case ({"DryRun": false}
// next to {"dryRun": true}). Other unknown members are ignored. refused
// names the fields such members stand for: which of their values
// encoding/json keeps is not what the request says, so none is echoed.
func checkMembers(data []byte) (refused map[string]bool, err error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	if tok, err := dec.Token(); err != nil || tok != json.Delim('{') {
		return nil, errors.New("request is not a JSON object of the documented form")
	}
	refused = map[string]bool{}
	seen := map[string]bool{}
	for dec.More() {
		tok, terr := dec.Token()
		if terr != nil {
			return refused, fmt.Errorf("request is not a JSON object of the documented form: %s", jsonProblem(terr))
		}
		key, _ := tok.(string)
		field := ""
		for _, f := range fieldNames {
			if strings.EqualFold(key, f) {
				field = f
			}
		}
		var problem error
		switch {
		case seen[key]:
			problem = fmt.Errorf("member %s appears twice", Quote(key))
		case field != "" && key != field:
			problem = fmt.Errorf("member %s: field names are case-sensitive, write %q", Quote(key), field)
		}
		seen[key] = true
		if problem != nil {
			if field != "" {
				refused[field] = true
			}
			if err == nil {
				err = problem
			}
		}
		var skip json.RawMessage
		if derr := dec.Decode(&skip); derr != nil {
			return refused, fmt.Errorf("request is not a JSON object of the documented form: %s", jsonProblem(derr))
		}
	}
	return refused, err
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

func jsonProblem(err error) string {
	var syntax *json.SyntaxError
	var typ *json.UnmarshalTypeError
	switch {
	case errors.As(err, &syntax):
		return fmt.Sprintf("syntax error at byte %d", syntax.Offset)
	case errors.As(err, &typ):
		return fmt.Sprintf("field %s must be a %s", typ.Field, typ.Type)
	}
	return "unreadable JSON"
}
