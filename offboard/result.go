package offboard

import (
	"bytes"
	"encoding/json"
	"fmt"
	"time"
	"unicode/utf8"
)

// Outcome of a request.
type Outcome = string

// Outcomes.
const (
	OutcomeCreated        Outcome = "created"
	OutcomeAlreadyPending Outcome = "already_pending"
	OutcomeDryRun         Outcome = "dry_run"
	OutcomeFailed         Outcome = "failed"
)

// Outcomes lists every outcome, for metric labels known up front.
var Outcomes = []Outcome{OutcomeCreated, OutcomeAlreadyPending, OutcomeDryRun, OutcomeFailed}

// Failure codes a failed result carries. They are stable: publishers and
// alerts depend on them.
const (
	CodeInvalidRequest    = "invalid_request"
	CodeUnknownTenant     = "unknown_tenant"
	CodeMachineNotFound   = "machine_not_found"
	CodeAmbiguousMachine  = "ambiguous_machine"
	CodeUnsupportedOS     = "unsupported_os"
	CodeUnsupportedClient = "unsupported_client_version"
	CodeForbidden         = "forbidden"
	CodeUnauthorized      = "unauthorized"
	CodeAPIRejected       = "api_rejected"
	CodeAPIError          = "api_error"
	CodeBlockedByPolicy   = "blocked_by_policy"
	CodeCancelled         = "cancelled"
	CodeInternal          = "internal_error"
)

// FailureCodes lists every failure code, for metric labels known up front.
var FailureCodes = []string{
	CodeInvalidRequest, CodeUnknownTenant, CodeMachineNotFound, CodeAmbiguousMachine,
	CodeUnsupportedOS, CodeUnsupportedClient, CodeForbidden, CodeUnauthorized,
	CodeAPIRejected, CodeAPIError, CodeBlockedByPolicy, CodeCancelled, CodeInternal,
}

// Result is what the worker publishes for each request.
type Result struct {
	RequestID       string          `json:"requestId"`
	Tenant          string          `json:"tenant"`
	MachineID       string          `json:"machineId,omitempty"`
	ComputerDNSName string          `json:"computerDnsName,omitempty"`
	Outcome         Outcome         `json:"outcome"`
	MachineAction   json.RawMessage `json:"machineAction,omitempty"`
	Error           *ResultError    `json:"error,omitempty"`
	Policy          *Policy         `json:"policy,omitempty"` // the guards applied, when the tenant has any
	Attempts        int             `json:"attempts"`         // offboard calls made for this request
	Attempt         int             `json:"attempt"`          // which attempt of the request this answers
	RequestedBy     string          `json:"requestedBy,omitempty"`
	Source          string          `json:"source,omitempty"`
	RequestSeq      uint64          `json:"requestSeq"`
	Priority        Priority        `json:"priority,omitempty"`
	ReceivedAt      time.Time       `json:"receivedAt"`
	CompletedAt     time.Time       `json:"completedAt"`
}

// Marshal encodes the result as the worker publishes it. MachineAction
// goes in as it is, last (MarshalWith): it is an answer of the API that
// was checked and compacted when it came (or a result read back), and
// json.Marshal would check and compact its kilobyte again for every
// result. It must hold valid JSON.
func (r *Result) Marshal() ([]byte, error) {
	shallow := *r
	shallow.MachineAction = nil
	return MarshalWith(&shallow, "machineAction", r.MachineAction)
}

// MarshalWith encodes v, which must encode as a JSON object without the
// member key, and adds key with value, JSON encoded already, as it is,
// without checking or compacting it again (json.Marshal does both with a
// json.RawMessage). value must be valid JSON; white space around it is
// dropped, and an empty value adds nothing, as omitempty would.
func MarshalWith(v any, key string, value []byte) ([]byte, error) {
	data, err := json.Marshal(v)
	if err != nil {
		return nil, err
	}
	value = bytes.TrimSpace(value)
	if len(value) == 0 {
		return data, nil
	}
	if len(data) < 2 || data[len(data)-1] != '}' {
		return nil, fmt.Errorf("json: %T does not encode as an object", v)
	}
	name, err := json.Marshal(key)
	if err != nil {
		return nil, err
	}
	out := make([]byte, 0, len(data)+len(name)+len(value)+2)
	out = append(out, data[:len(data)-1]...) // without its closing brace
	if len(data) > 2 {
		out = append(out, ',')
	}
	out = append(out, name...)
	out = append(out, ':')
	out = append(out, value...)
	return append(out, '}'), nil
}

// Guard rules a blocked_by_policy result names in error.rule, in the order
// they are applied: the first that matches is the one named.
const (
	RuleMachineIDs         = "protect.machineIds"
	RuleComputerDNSNames   = "protect.computerDnsNames"
	RuleMachineTags        = "protect.machineTags"
	RuleRbacGroups         = "protect.rbacGroups"
	RuleRequireInactiveFor = "requireInactiveFor"
	// RuleNotSeenSince is the request's own premise (its notSeenSince),
	// checked after the tenant's guards.
	RuleNotSeenSince = "notSeenSince"
)

// Rules lists every guard rule, for metric labels known up front.
var Rules = []string{RuleMachineIDs, RuleComputerDNSNames, RuleMachineTags, RuleRbacGroups, RuleRequireInactiveFor, RuleNotSeenSince}

// Policy records the guards applied to a request's device.
type Policy struct {
	// Checked lists the kinds of guard configured: "protect",
	// "requireInactiveFor"; and "notSeenSince" when the request carried
	// one.
	Checked []string `json:"checked"`
	// LastSeen is the device's lastSeen as Defender reported it, in RFC
	// 3339 and UTC with Defender's precision, when the device was read
	// and its lastSeen is a time.
	LastSeen string `json:"lastSeen,omitempty"`
}

// ResultError describes a failure.
type ResultError struct {
	Code       string      `json:"code"`
	Message    string      `json:"message"`
	HTTPStatus int         `json:"httpStatus,omitempty"`
	APICode    string      `json:"apiCode,omitempty"`
	Rule       string      `json:"rule,omitempty"` // blocked_by_policy: the guard rule that refused (Rules)
	Candidates []Candidate `json:"candidates,omitempty"`
}

// Candidate is one of several devices sharing a requested name.
type Candidate struct {
	MachineID    string `json:"machineId"`
	LastSeen     string `json:"lastSeen,omitempty"`
	HealthStatus string `json:"healthStatus,omitempty"`
}

// Failed is a failure with its message cut to MaxMessageLength characters.
func Failed(code, message string) *ResultError {
	return &ResultError{Code: code, Message: TruncateMessage(message)}
}

// TruncateMessage cuts a message to MaxMessageLength characters, never in
// the middle of a character.
func TruncateMessage(s string) string {
	if utf8.RuneCountInString(s) <= MaxMessageLength {
		return s
	}
	return string([]rune(s)[:MaxMessageLength-1]) + "…"
}
