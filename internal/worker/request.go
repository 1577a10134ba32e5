package worker

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/contoso-secops/mde-offboard/internal/config"
	"github.com/contoso-secops/mde-offboard/internal/queue"
)

// Request is an offboard request as published (see the contract).
type Request struct {
	RequestID       string `json:"requestId"`
	MachineID       string `json:"machineId"`
	ComputerDNSName string `json:"computerDnsName"`
	Comment         string `json:"comment"`
	Tenant          string `json:"tenant"`
	RequestedBy     string `json:"requestedBy"`
	Source          string `json:"source"`
	DryRun          bool   `json:"dryRun"`
}

var (
	requestIDForm = regexp.MustCompile(`^[A-Za-z0-9._:-]{1,128}$`)
	machineIDForm = regexp.MustCompile(`^[0-9a-fA-F]{40}$`)
	// A DNS name: labels of letters, digits, '-' and '_', joined by dots.
	dnsNameForm = regexp.MustCompile(`^[A-Za-z0-9_]([A-Za-z0-9_-]{0,62})(\.[A-Za-z0-9_]([A-Za-z0-9_-]{0,62}))*\.?$`)
)

const maxLabel = 256 // requestedBy, source

var fieldNames = []string{"requestId", "machineId", "computerDnsName", "comment", "tenant", "requestedBy", "source", "dryRun"}

// checkMembers refuses what encoding/json would read differently from a
// case-sensitive reader (an approval step, an audit): a member that repeats,
// or one that differs from a field name only in case ({"DryRun": false}
// next to {"dryRun": true}). Other unknown members are ignored.
func checkMembers(data []byte) error {
	dec := json.NewDecoder(bytes.NewReader(data))
	if tok, err := dec.Token(); err != nil || tok != json.Delim('{') {
		return errors.New("request is not a JSON object of the documented form")
	}
	seen := map[string]bool{}
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return fmt.Errorf("request is not a JSON object of the documented form: %s", jsonProblem(err))
		}
		key, _ := tok.(string)
		if seen[key] {
			return fmt.Errorf("member %s appears twice", quote(key))
		}
		seen[key] = true
		for _, f := range fieldNames {
			if key != f && strings.EqualFold(key, f) {
				return fmt.Errorf("member %s: field names are case-sensitive, write %q", quote(key), f)
			}
		}
		var skip json.RawMessage
		if err := dec.Decode(&skip); err != nil {
			return fmt.Errorf("request is not a JSON object of the documented form: %s", jsonProblem(err))
		}
	}
	return nil
}

// parseRequest reads and checks a request. The error message is meant for
// the publisher: it says which field is wrong and why, and never echoes
// more than a short, printable part of the input.
func parseRequest(data []byte, subjectTenant string) (Request, error) {
	var r Request
	if len(data) > queue.MaxRequestSize {
		return r, fmt.Errorf("request is %d bytes, more than %d", len(data), queue.MaxRequestSize)
	}
	if !utf8.Valid(data) {
		return r, fmt.Errorf("request is not UTF-8")
	}
	if err := checkMembers(data); err != nil {
		_ = json.Unmarshal(data, &r) // only to keep the id for the answer
		if !requestIDForm.MatchString(r.RequestID) {
			r.RequestID = ""
		}
		return r, err
	}
	if err := json.Unmarshal(data, &r); err != nil {
		if !requestIDForm.MatchString(r.RequestID) {
			r.RequestID = "" // keep an id only when it is one
		}
		return r, fmt.Errorf("request is not a JSON object of the documented form: %s", jsonProblem(err))
	}
	// Keep the id for the result even when other fields are wrong.
	id := r.RequestID
	if !requestIDForm.MatchString(id) {
		r.RequestID = ""
		if id == "" {
			return r, fmt.Errorf("requestId is missing")
		}
		return r, fmt.Errorf("requestId %s does not match [A-Za-z0-9._:-]{1,128}", quote(id))
	}
	switch {
	case r.MachineID != "" && r.ComputerDNSName != "":
		return r, fmt.Errorf("give machineId or computerDnsName, not both")
	case r.MachineID == "" && r.ComputerDNSName == "":
		return r, fmt.Errorf("machineId or computerDnsName is required")
	case r.MachineID != "" && !machineIDForm.MatchString(r.MachineID):
		return r, fmt.Errorf("machineId %s is not 40 hexadecimal characters", quote(r.MachineID))
	case r.ComputerDNSName != "" && (len(r.ComputerDNSName) > 255 || !dnsNameForm.MatchString(r.ComputerDNSName)):
		return r, fmt.Errorf("computerDnsName %s is not a DNS name", quote(r.ComputerDNSName))
	}
	r.MachineID = strings.ToLower(r.MachineID)
	if r.Tenant != "" && r.Tenant != subjectTenant {
		return r, fmt.Errorf("tenant %s does not match the subject's tenant %q", quote(r.Tenant), subjectTenant)
	}
	if n := utf8.RuneCountInString(r.Comment); n > config.MaxCommentLength {
		return r, fmt.Errorf("comment has %d characters, more than %d", n, config.MaxCommentLength)
	}
	if strings.IndexFunc(r.Comment, isControl) >= 0 {
		return r, fmt.Errorf("comment holds control characters")
	}
	for name, v := range map[string]string{"requestedBy": r.RequestedBy, "source": r.Source} {
		if utf8.RuneCountInString(v) > maxLabel || strings.IndexFunc(v, isControl) >= 0 {
			return r, fmt.Errorf("%s must be at most %d printable characters", name, maxLabel)
		}
	}
	return r, nil
}

func isControl(r rune) bool { return unicode.IsControl(r) }

// quote shows at most 48 characters of untrusted input, escaped.
func quote(s string) string {
	if utf8.RuneCountInString(s) > 48 {
		s = string([]rune(s)[:48]) + "…"
	}
	return fmt.Sprintf("%q", s)
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

// Outcomes of a request.
const (
	OutcomeCreated        = "created"
	OutcomeAlreadyPending = "already_pending"
	OutcomeDryRun         = "dry_run"
	OutcomeFailed         = "failed"
)

// Result is what the worker publishes for each request.
type Result struct {
	RequestID       string          `json:"requestId"`
	Tenant          string          `json:"tenant"`
	MachineID       string          `json:"machineId,omitempty"`
	ComputerDNSName string          `json:"computerDnsName,omitempty"`
	Outcome         string          `json:"outcome"`
	MachineAction   json.RawMessage `json:"machineAction,omitempty"`
	Error           *ResultError    `json:"error,omitempty"`
	Attempts        int             `json:"attempts"`
	RequestedBy     string          `json:"requestedBy,omitempty"`
	Source          string          `json:"source,omitempty"`
	RequestSeq      uint64          `json:"requestSeq"`
	Priority        string          `json:"priority,omitempty"`
	ReceivedAt      time.Time       `json:"receivedAt"`
	CompletedAt     time.Time       `json:"completedAt"`
}

// ResultError describes a failure.
type ResultError struct {
	Code       string      `json:"code"`
	Message    string      `json:"message"`
	HTTPStatus int         `json:"httpStatus,omitempty"`
	APICode    string      `json:"apiCode,omitempty"`
	Candidates []Candidate `json:"candidates,omitempty"`
}

// Candidate is one of several devices sharing a requested name.
type Candidate struct {
	MachineID    string `json:"machineId"`
	LastSeen     string `json:"lastSeen,omitempty"`
	HealthStatus string `json:"healthStatus,omitempty"`
}
