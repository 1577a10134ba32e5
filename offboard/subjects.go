package offboard

import (
	"errors"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"unicode"
)

// DefaultPrefix is the prefix of every subject unless configured otherwise.
const DefaultPrefix = "mde.offboard"

// Streams and key-value buckets of the contract.
const (
	StreamRequests = "MDE_OFFBOARD_REQUESTS"
	StreamResults  = "MDE_OFFBOARD_RESULTS"
	StreamDead     = "MDE_OFFBOARD_DEAD"
	StreamQuota    = "MDE_OFFBOARD_QUOTA"
	StreamBudget   = "MDE_OFFBOARD_BUDGET"
	BucketLedger   = "MDE_OFFBOARD_LEDGER"
	BucketControl  = "MDE_OFFBOARD_CONTROL"
)

// TenantName is the form of a tenant's configured name, used in subjects,
// consumer names and metric labels.
var TenantName = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]{0,62}$`)

// Priority of a request: its subject says it.
type Priority string

// Priorities, in the order they are served.
const (
	Normal Priority = "normal"
	Bulk   Priority = "bulk"
)

// Subjects builds the contract's subjects under one prefix. The zero value
// uses DefaultPrefix.
type Subjects struct{ Prefix string }

func (s Subjects) prefix() string {
	if s.Prefix == "" {
		return DefaultPrefix
	}
	return s.Prefix
}

// Request is where a tenant's requests of a priority are published.
func (s Subjects) Request(tenant string, p Priority) string {
	if p == Bulk {
		return s.prefix() + ".request." + tenant + ".bulk"
	}
	return s.prefix() + ".request." + tenant
}

// AllRequests matches every request subject.
func (s Subjects) AllRequests() string { return s.prefix() + ".request.>" }

// Result is the subject of a tenant's results.
func (s Subjects) Result(tenant string) string { return s.prefix() + ".result." + tenant }

// Dead is the subject of a tenant's dead letters.
func (s Subjects) Dead(tenant string) string { return s.prefix() + ".dead." + tenant }

// Action is the subject of a tenant's Machine Action status changes.
func (s Subjects) Action(tenant string) string { return s.prefix() + ".action." + tenant }

// Quota is the subject of a tenant's quota journal (the worker's own).
func (s Subjects) Quota(tenant string) string { return s.prefix() + ".quota." + tenant }

// AllQuota matches every tenant's quota journal.
func (s Subjects) AllQuota() string { return s.prefix() + ".quota.>" }

// Budget is the subject of a tenant's budget journal (the worker's own):
// the actions created, entered like quota calls.
func (s Subjects) Budget(tenant string) string { return s.prefix() + ".budget." + tenant }

// AllBudget matches every tenant's budget journal.
func (s Subjects) AllBudget() string { return s.prefix() + ".budget.>" }

// Control is the subject of a tenant's control events (audit trail).
func (s Subjects) Control(tenant string) string { return s.prefix() + ".control." + tenant }

// Working is the subject on which the worker process marked instance
// answers whether a request is in its hands (the worker's own: replicas
// ask each other, request and reply).
func (s Subjects) Working(instance string) string { return s.prefix() + ".working." + instance }

// Plan is the subject a worker answers campaign plan requests on.
func (s Subjects) Plan(tenant string) string { return s.prefix() + ".plan." + tenant }

// Guards is the subject every worker replica that serves the tenant
// answers with the tenant's guards (GuardsReply) on.
func (s Subjects) Guards(tenant string) string { return s.prefix() + ".guards." + tenant }

// AllGuards is the subject of every tenant's guards requests.
func (s Subjects) AllGuards() string { return s.prefix() + ".guards.*" }

// ParseRequest reads the tenant token and priority of a request subject.
// ok is false when the subject has neither contract form.
func (s Subjects) ParseRequest(subject string) (tenant string, p Priority, ok bool) {
	rest, found := strings.CutPrefix(subject, s.prefix()+".request.")
	if !found || rest == "" {
		return "", "", false
	}
	parts := strings.Split(rest, ".")
	switch {
	case len(parts) == 1:
		return parts[0], Normal, true
	case len(parts) == 2 && parts[1] == "bulk":
		return parts[0], Bulk, true
	}
	return parts[0], "", false
}

// Message ids (Nats-Msg-Id). Request ids are unique per tenant only, so
// every id carries the tenant; the ':' after it cannot occur in a tenant
// name, so tenant "contoso" with id "gov-1" and tenant "contoso-gov" with
// id "1" stay apart.

// RequestMsgID is the message id a publisher sets on a request: attempt 1
// (or 0, the default) is <tenant>:<requestId>, a retry
// <tenant>:<requestId>:<attempt>.
func RequestMsgID(tenant, requestID string, attempt int) string {
	return withAttempt(tenant+":"+requestID, attempt)
}

// ResultMsgID is the message id of a checked request's result, so that a
// result published again after a crash is dropped as a duplicate:
// result:<tenant>:<requestId>, a retry's result:<tenant>:<requestId>:<attempt>.
//
// A request id may itself end in ":<digits>", so those two forms alone
// would give request "chg:2" and the retry "chg" attempt 2 one id, and
// the results stream would drop the second of the two results as a
// duplicate: that request would never be answered. The first attempt of
// such an id therefore names its attempt too (result:<tenant>:chg:2:1),
// which keeps every request id and attempt apart.
func ResultMsgID(tenant, requestID string, attempt int) string {
	if attempt <= 1 && endsInAttempt(requestID) {
		return "result:" + tenant + ":" + requestID + ":1"
	}
	return withAttempt("result:"+tenant+":"+requestID, attempt)
}

// endsInAttempt tells whether id ends in ":<digits>", the form of a retry's
// suffix.
func endsInAttempt(id string) bool {
	i := strings.LastIndexByte(id, ':')
	if i < 0 || i == len(id)-1 {
		return false
	}
	return strings.Trim(id[i+1:], "0123456789") == ""
}

func withAttempt(id string, attempt int) string {
	if attempt > 1 {
		return id + ":" + strconv.Itoa(attempt)
	}
	return id
}

// Seq identifies a request by its place in the request stream, for answers
// that do not go through the ledger. The stream's creation time keeps the
// ids of a re-created stream, whose sequences start again at 1, apart.
type Seq struct {
	Epoch int64 // creation time of the request stream, Unix nanoseconds
	N     uint64
}

func (s Seq) String() string {
	return strconv.FormatInt(s.Epoch, 36) + ":" + strconv.FormatUint(s.N, 10)
}

// SeqResultMsgID is the message id of a result published without the
// ledger: a request that failed its checks, or of an unconfigured tenant.
func SeqResultMsgID(tenant string, seq Seq) string {
	return "result-seq:" + tenant + ":" + seq.String()
}

// ActionMsgID is the message id of a Machine Action's status change.
func ActionMsgID(tenant, actionID, status string) string {
	return "action:" + tenant + ":" + actionID + ":" + status
}

// Dead-letter headers added to the original request's headers.
const (
	HeaderErrorCode       = "Mde-Error-Code"
	HeaderErrorMessage    = "Mde-Error-Message"
	HeaderRequestSeq      = "Mde-Request-Seq"
	HeaderOriginalSubject = "Mde-Original-Subject"
	// HeaderOriginalPrefix keeps a request's Nats-* headers (but
	// Nats-Msg-Id) in its dead letter.
	HeaderOriginalPrefix = "Mde-Original-"
	// HeaderOriginalHeader keeps, as "<name>: <value>", a request's header
	// whose name the NATS client library cannot send (it allows fewer
	// characters than the server and other clients do) in its dead letter.
	HeaderOriginalHeader = "Mde-Original-Header"
	// HeaderDroppedHeaders counts the request's headers left out of its
	// dead letter: with the worker's own, they would take the copy over
	// the server's limit for a message's headers (65,535 bytes).
	HeaderDroppedHeaders = "Mde-Dropped-Headers"
)

// CheckPrefix refuses a subject prefix that cannot start a subject: it
// must be dot-separated, non-empty tokens without white space, control
// characters or the wildcards '*' and '>'.
func CheckPrefix(prefix string) error {
	if err := CheckTokens(prefix); err != nil {
		return fmt.Errorf("%w; want tokens separated by '.', such as %s", err, DefaultPrefix)
	}
	return nil
}

// MaxPrefixLength is the longest subject prefix, and inbox prefix, in
// bytes. NATS takes a subject on a protocol line of at most 4 KiB, and
// JetStream's API subjects carry a consumer's subject after its own: a
// prefix of thousands of characters (a file's content given in its
// place) made the server close the connection.
const MaxPrefixLength = 255

// CheckTokens says what keeps s from being the start of a subject: empty,
// longer than MaxPrefixLength, an empty token, a wildcard, white space or
// a control character; nil when nothing does.
func CheckTokens(s string) error {
	if s == "" {
		return errors.New("empty")
	}
	if len(s) > MaxPrefixLength {
		return fmt.Errorf("longer than %d bytes", MaxPrefixLength)
	}
	for tok := range strings.SplitSeq(s, ".") {
		if tok == "" {
			return errors.New("an empty token (a leading, trailing or doubled '.')")
		}
		for _, r := range tok {
			switch {
			case r == '*' || r == '>':
				return errors.New("a wildcard")
			case unicode.IsSpace(r) || unicode.IsControl(r):
				return errors.New("white space or a control character")
			}
		}
	}
	return nil
}
