package mde

import (
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/contoso-secops/mde-offboard/offboard"
)

// Class is what the caller does next. Every attempt (an HTTP answer, a
// transport error, a timeout, a token failure) is classified once, here;
// the class drives the retry and the ack, the reason the metric label.
type Class int

const (
	// Success is a 2xx answer.
	Success Class = iota
	// AlreadyPending means the device has an unfinished action of the same
	// type (400 ActiveRequestAlreadyExists).
	AlreadyPending
	// Retry is a network error, timeout, 5xx or a token that could not be
	// had for now: try again with backoff.
	Retry
	// Throttled is a 429: pause the tenant for RetryAfter, then try again.
	Throttled
	// NotFound is a 404 of a single device or action. The API answers it
	// now and then for things that exist, so look again a few times before
	// it is final.
	NotFound
	// Final is any other answer: do not try again.
	Final
)

var classNames = [...]string{"success", "already_pending", "retry", "throttled", "not_found", "final"}

func (c Class) String() string {
	if c >= 0 && int(c) < len(classNames) {
		return classNames[c]
	}
	return "class(" + strconv.Itoa(int(c)) + ")"
}

// Reason says why an attempt got its class. Its String is the metric label;
// the list is fixed, so label values are known up front.
type Reason int

// Reasons.
const (
	ReasonSuccess             Reason = iota // 2xx
	ReasonAlreadyPending                    // 400 ActiveRequestAlreadyExists
	ReasonThrottled                         // 429
	ReasonServerError                       // 5xx, 408
	ReasonTimeout                           // no answer within the call's time
	ReasonNetwork                           // no answer: connection refused, reset, ...
	ReasonToken                             // no token for now: nothing was sent
	ReasonCredentialsRejected               // the login host refused the credentials: nothing was sent
	ReasonUnauthorized                      // 401 from the API
	ReasonForbidden                         // 403
	ReasonNotFound                          // 404
	ReasonUnsupportedOS                     // 400 OsPlatformNotSupported
	ReasonUnsupportedClient                 // 400 ClientVersionNotSupported
	ReasonRejected                          // any other answer
	ReasonCancelled                         // the caller's context ended
)

var reasonNames = [...]string{
	"success", "already_pending", "throttled", "server_error", "timeout", "network", "token",
	"credentials_rejected", "unauthorized", "forbidden", "not_found", "unsupported_os",
	"unsupported_client_version", "rejected", "cancelled",
}

// Reasons lists every reason, for metric labels known up front.
func Reasons() []Reason {
	rs := make([]Reason, len(reasonNames))
	for i := range rs {
		rs[i] = Reason(i)
	}
	return rs
}

func (r Reason) String() string {
	if r >= 0 && int(r) < len(reasonNames) {
		return reasonNames[r]
	}
	return "reason(" + strconv.Itoa(int(r)) + ")"
}

// APIError is the error body the API sends:
// {"error": {"code": "...", "message": "...", "target": "<correlation id>"}}.
type APIError struct {
	Code    string `json:"code"`
	Message string `json:"message"`
	Target  string `json:"target,omitempty"`
	// odd says a member was neither a string nor null: not the API's
	// own shape, so a 404 so written is not its answer (notTheAPIs).
	odd bool
}

// Verdict is one attempt, classified: what came back and what to do next.
type Verdict struct {
	Class  Class
	Reason Reason
	// Status is the HTTP status; 0 when no answer came.
	Status int
	// Body is a successful answer's body as received (size-capped). An
	// error answer's body is read into Err and not kept: it may quote what
	// the request carried, its token included.
	Body []byte
	// Err is the parsed error body, if any.
	Err *APIError
	// Named is what a successful FindMachinesByName found; nil otherwise.
	Named *NameMatches
	// RetryAfter is the pause a 429 asks for, or the least wait before
	// a 5xx, or a token the login host would not give yet, is tried
	// again when it names one (zero: none named).
	RetryAfter time.Duration
	// ServerTime is the API's clock when it answered (its Date header, to
	// the second); zero without one.
	ServerTime time.Time
	// Sent is true when the call may have reached the API: it counts in
	// the quota, and a write may have taken effect.
	Sent bool
	// RefreshToken hints that a new token may help (the API refused the
	// one sent, or found it without the roles the call needs): get one,
	// then try once more.
	RefreshToken bool
	// FailureCode is the contract's code when the attempt is final (or
	// not found).
	FailureCode string
	// cause describes an attempt that got no HTTP answer; safe to show.
	cause string
	// redirect is where a 3xx answer pointed, not followed: its scheme,
	// host and path, the token taken out; safe to show.
	redirect string
	// refused tells which token the API refused, when RefreshToken is
	// set: Credential.TokenRefused renews it once for all the calls it
	// was refused to. A hash, never the token: a verdict is printed.
	refused tokenID
	// tokenFailure is why no token could be had for the attempt, one of
	// TokenFailureReasons; "" when one was, or the attempt failed before.
	tokenFailure string
}

// Reasons no token could be had for a call, as
// mde_offboard_token_failures_total labels them: a fixed list, so that
// the label's values are known up front and never carry the identity
// library's or the login host's text.
const (
	// TokenRefused: the login host refused the credentials (a wrong or
	// expired secret, a certificate it does not take, a wrong tenantId
	// or clientId), the scope asked for, or the managed identity. Final.
	TokenRefused = "refused"
	// TokenThrottled: the login host answered 429.
	TokenThrottled = "throttled"
	// TokenErrorAnswer: another error answer (a 5xx, a proxy's page), or
	// an answer that could not be read.
	TokenErrorAnswer = "error_answer"
	// TokenNoAnswer: the login host, or the managed identity endpoint,
	// could not be reached in time.
	TokenNoAnswer = "no_answer"
	// TokenCredential: the credential held here (a secret, certificate
	// or federated token file) could not be read or used.
	TokenCredential = "credential"
	// TokenOther: the identity library gave no token for another reason.
	TokenOther = "other"
)

// TokenFailureReasons lists every reason a token failure is counted by.
var TokenFailureReasons = []string{TokenRefused, TokenThrottled, TokenErrorAnswer, TokenNoAnswer, TokenCredential, TokenOther}

// TokenFailure says why no token could be had for the attempt (one of
// TokenFailureReasons); "" when the attempt did not fail for want of a
// token.
func (v *Verdict) TokenFailure() string { return v.tokenFailure }

// tokenID tells a token from another without holding it.
type tokenID [sha256.Size]byte

// idOf is the tokenID of a token.
func idOf(token string) tokenID { return sha256.Sum256([]byte(token)) }

// Classify turns an HTTP answer into a Verdict. It is the only place that
// interprets status codes and API error codes. now reads a Retry-After
// given as a date.
func Classify(status int, header http.Header, body []byte, now time.Time) *Verdict {
	v := &Verdict{Status: status, Sent: true}
	if d, err := http.ParseTime(header.Get("Date")); err == nil {
		v.ServerTime = d.UTC()
	}
	if status >= 200 && status < 300 {
		v.Body = body
	} else {
		if v.Err = readAPIError(body); v.Err != nil {
			// Shown in results and logs: a credential the answer quotes,
			// in part or escaped so the client could not match it, goes.
			v.Err.Code, v.Err.Message, v.Err.Target = withoutCredentials(v.Err.Code), withoutCredentials(v.Err.Message), withoutCredentials(v.Err.Target)
			v.Err.Code = shortened(v.Err.Code, maxAPICode)
		}
	}
	code := v.APICode()
	switch {
	case status >= 200 && status < 300:
		v.Class, v.Reason = Success, ReasonSuccess
	case status == http.StatusTooManyRequests:
		// Matched on the status: the body's code has been seen as "429".
		v.Class, v.Reason = Throttled, ReasonThrottled
		// A date is the API's clock: measured from its own Date when it
		// sends one, so that this host's clock being off does not stretch
		// or cut the pause.
		v.RetryAfter = retryAfter(header.Get("Retry-After"), cmp.Or(v.ServerTime, now))
	case status >= 500 || status == http.StatusRequestTimeout:
		v.Class, v.Reason = Retry, ReasonServerError
		// A service that says when to come back (503 Retry-After) is
		// not tried again sooner; saying nothing usable, the backoff's.
		v.RetryAfter, _ = parseRetryAfter(header.Get("Retry-After"), cmp.Or(v.ServerTime, now))
	case status == http.StatusNotFound && v.notTheAPIs():
		// A path the API has no resource for (an apiBaseURL with a path
		// too many), or a proxy's or web server's page: looked at again
		// as any 404, then api_rejected. machine_not_found would say the
		// device is gone, with nothing pointing at the setting.
		v.Class, v.Reason, v.FailureCode = NotFound, ReasonNotFound, offboard.CodeAPIRejected
	case status == http.StatusNotFound:
		v.Class, v.Reason, v.FailureCode = NotFound, ReasonNotFound, offboard.CodeMachineNotFound
	case status == http.StatusUnauthorized:
		v.Class, v.Reason, v.FailureCode = Final, ReasonUnauthorized, offboard.CodeUnauthorized
		v.RefreshToken = true
	case status == http.StatusForbidden:
		v.Class, v.Reason, v.FailureCode = Final, ReasonForbidden, offboard.CodeForbidden
		// The application's roles are in its token as Entra ID issued
		// it: a token had before admin consent was granted lacks them
		// for the hour it lives, and every call, a retry of those
		// refused included, was refused with it. A new one may have
		// them: got once, then the call tried once more, as for a 401.
		v.RefreshToken = v.Err != nil && strings.Contains(strings.ToLower(v.Err.Message), missingRoles)
	case status == http.StatusBadRequest && strings.EqualFold(code, "ActiveRequestAlreadyExists"):
		v.Class, v.Reason = AlreadyPending, ReasonAlreadyPending
	case status == http.StatusBadRequest && strings.EqualFold(code, "OsPlatformNotSupported"):
		v.Class, v.Reason, v.FailureCode = Final, ReasonUnsupportedOS, offboard.CodeUnsupportedOS
	case status == http.StatusBadRequest && strings.EqualFold(code, "ClientVersionNotSupported"):
		v.Class, v.Reason, v.FailureCode = Final, ReasonUnsupportedClient, offboard.CodeUnsupportedClient
	case status == http.StatusBadRequest && v.Err != nil && strings.Contains(strings.ToLower(v.Err.Message), alreadyInProgress):
		// The documentation gives the duplicate's refusal as a 400 with
		// this message and no code (MicrosoftDocs/microsoft-365-docs PR
		// 5993); the code above is the one seen in the wild. Under
		// another code it is the same refusal: the worker confirms it by
		// listing the device's actions, and fails the request when none
		// is pending. Recognised by its words alone, it keeps the failure
		// code of the 4xx it is, for when no pending action bears it out.
		v.Class, v.Reason, v.FailureCode = AlreadyPending, ReasonAlreadyPending, offboard.CodeAPIRejected
	default:
		// 400 InvalidRequestBody, MissingRequiredParameter, InvalidInput,
		// BadRequest, ODataError, and any other 4xx: the API refused what it
		// was sent, and sending it again will not change that.
		v.Class, v.Reason, v.FailureCode = Final, ReasonRejected, offboard.CodeAPIRejected
	}
	return v
}

// readAPIError reads an error body, nil when it has no "error" object.
// Each member is taken when it is a string and left empty when it is
// anything else: a code written as a number (400, as the 429's is written
// "429") or a message written as an object must not cost the members
// that can be read, the message that tells a duplicate's refusal among
// them.
func readAPIError(body []byte) *APIError {
	var eb struct {
		Error *struct {
			Code    json.RawMessage `json:"code"`
			Message json.RawMessage `json:"message"`
			Target  json.RawMessage `json:"target"`
		} `json:"error"`
	}
	if json.Unmarshal(body, &eb) != nil || eb.Error == nil {
		return nil
	}
	e := &APIError{}
	text := func(raw json.RawMessage) string {
		var s string
		if len(raw) == 0 { // left out
			return ""
		}
		if json.Unmarshal(raw, &s) != nil {
			e.odd = true
			return ""
		}
		return s
	}
	e.Code, e.Message, e.Target = text(eb.Error.Code), text(eb.Error.Message), text(eb.Error.Target)
	return e
}

// missingRoles is in the API's message, in lower case, for a token
// without the roles the call needs: "Missing application roles. API
// required roles: Machine.Offboard".
const missingRoles = "missing application roles"

// alreadyInProgress is the API's message, in lower case, for an action
// refused because one of its type is pending: "Action is already in
// progress".
const alreadyInProgress = "already in progress"

// maxAPICode is the most characters of the API's error code kept. The
// code goes as it is into results (error.apiCode), ledger entries and
// log lines; the documented codes are identifiers of a few tens of
// characters. An answer may hold megabytes in it (a broken gateway): a
// result that large cannot be stored, and its request would come back
// for ever, calling the API each time.
const maxAPICode = 100

// shortened is s cut to at most n characters, "…" marking a cut.
func shortened(s string, n int) string {
	if utf8.RuneCountInString(s) <= n {
		return s
	}
	return string([]rune(s)[:n-1]) + "…"
}

// bearerValue and jwtText match what looks like a credential in an API's
// error text: an Authorization header's value (at least 16 characters
// after "Bearer", with a digit among them, so that "Bearer token" and
// "Bearer authentication/authorization" stay), or a Proxy-Authorization
// header's (after "Basic": a proxy's user and password in base64, which
// a proxy refusing the tunnel may quote in its status line, and Go's
// client in its error), and anything shaped like a JSON Web Token
// (base64url parts, the first an encoded JSON object).
var (
	bearerValue = regexp.MustCompile(`(?i)\b(bearer|basic)(\s+)([A-Za-z0-9\-._~+/]{16,}=*)`)
	jwtText     = regexp.MustCompile(`eyJ[A-Za-z0-9_\-]+\.[A-Za-z0-9_\-.]*`)
)

// withoutCredentials is s with what looks like a credential replaced.
func withoutCredentials(s string) string {
	s = bearerValue.ReplaceAllStringFunc(s, func(m string) string {
		parts := bearerValue.FindStringSubmatch(m)
		if !strings.ContainsAny(parts[3], "0123456789") {
			return m
		}
		return parts[1] + parts[2] + redacted
	})
	return jwtText.ReplaceAllString(s, redacted)
}

// ClassifyError turns an attempt that got no HTTP answer into a Verdict.
// sent says whether the request may have left (false: it failed before,
// getting its token, being built or getting a connection). ctx is the
// call's context.
func ClassifyError(ctx context.Context, err error, sent bool) *Verdict {
	v := &Verdict{Class: Retry, Sent: sent}
	var tokErr *TokenError
	var netErr net.Error
	switch {
	case ctx.Err() != nil && !errors.Is(ctx.Err(), context.DeadlineExceeded):
		v.Reason, v.cause = ReasonCancelled, "the call was cancelled"
	case errors.As(err, &tokErr) && tokErr.Final:
		v.Class, v.Reason, v.FailureCode = Final, ReasonCredentialsRejected, offboard.CodeUnauthorized
		v.cause, v.tokenFailure = tokErr.Error(), tokErr.failureReason()
	case errors.As(err, &tokErr):
		v.Reason, v.cause, v.RetryAfter = ReasonToken, safeText(tokErr), tokErr.RetryAfter
		v.tokenFailure = tokErr.failureReason()
	case errors.As(err, new(errNoConnection)) && (errors.Is(err, context.DeadlineExceeded) || errors.As(err, &netErr) && netErr.Timeout()):
		v.Reason, v.cause = ReasonTimeout, "no connection to the API in time: not sent"
	case errors.As(err, new(errNoConnection)):
		v.Reason, v.cause = ReasonNetwork, "no connection to the API, not sent: "+safeText(err)
	case !sent && !errors.Is(err, errBuild):
		// Another credential's error text may hold what the login host
		// said, token included: it is not shown.
		v.Reason, v.cause, v.tokenFailure = ReasonToken, "get token: the credential gave no token", TokenOther
	case !sent:
		v.Class, v.Reason, v.FailureCode = Final, ReasonRejected, offboard.CodeInternal
		v.cause = safeText(err)
	case errors.Is(err, context.DeadlineExceeded) || errors.As(err, &netErr) && netErr.Timeout():
		v.Reason, v.cause = ReasonTimeout, "no answer from the API in time"
	default:
		v.Reason, v.cause = ReasonNetwork, "no answer from the API: "+safeText(err)
	}
	return v
}

// errBuild marks a request that could not be built: nothing was sent, and
// trying again will not help.
var errBuild = errors.New("build request")

// safeText is an error's text, each URL in it without its user
// information, query and fragment, and what looks like a bearer token
// replaced, cut short. Callers pass only errors
// whose text holds no other secret: transport errors (the request's URL
// stripped) and *TokenError. A transport error can still name a URL in
// its text: a proxy setting that does not parse is quoted whole, its
// user and password included, by the proxy function's error.
func safeText(err error) string {
	// Before the cut, which could leave a user and password without
	// the '@' that marks them. A transport error can also quote what
	// the server sent (a status line it cannot read), which may echo the
	// request's Authorization header.
	return shortened(withoutCredentials(withoutURLCredentials(err.Error())), 300)
}

// quotedText is a string quoted as Go's %q does: errors that name a URL
// (url.Error, a proxy setting's) quote it so, whatever it holds.
var quotedText = regexp.MustCompile(`"(?:[^"\\]|\\.)*"`)

// word is a run of text without white space.
var word = regexp.MustCompile(`\S+`)

// withoutURLCredentials is text with each URL in it, quoted or not, shown
// as shownURL gives it: without anything up to its last '@' (a user and
// password, a token) and without its query or fragment. A quoted string
// is taken whole, so a password with a space or a quote in it goes too;
// elsewhere, each word that holds "://" or '@' is taken.
func withoutURLCredentials(s string) string {
	if !strings.Contains(s, "://") && !strings.Contains(s, "@") {
		return s
	}
	s = quotedText.ReplaceAllStringFunc(s, func(q string) string {
		inner := q[1 : len(q)-1]
		if !strings.Contains(inner, "://") && !strings.Contains(inner, "@") {
			return q
		}
		return `"` + shownURL(inner) + `"`
	})
	return word.ReplaceAllStringFunc(s, func(w string) string {
		if !strings.Contains(w, "://") && !strings.Contains(w, "@") {
			return w
		}
		return shownURL(w)
	})
}

// MinRetryAfter is the pause taken after a 429 that names no usable
// Retry-After.
const MinRetryAfter = 10 * time.Second

func retryAfter(v string, now time.Time) time.Duration {
	if d, ok := parseRetryAfter(v, now); ok {
		return d
	}
	return MinRetryAfter
}

// parseRetryAfter reads a Retry-After header: a number of seconds (at
// least one) or an HTTP date, at most an hour; false when it names no
// wait (none, zero, a negative, unreadable, a date in the past).
func parseRetryAfter(v string, now time.Time) (time.Duration, bool) {
	secs, err := strconv.ParseFloat(v, 64)
	if errors.Is(err, strconv.ErrRange) && math.IsInf(secs, 1) {
		// A number of seconds too large for a float ("99…9" of 400
		// digits): a long pause, not none.
		return time.Hour, true
	}
	if err == nil && secs > 0 && !math.IsNaN(secs) && !math.IsInf(secs, 0) {
		// Capped before converting: a huge value would overflow Duration.
		return max(time.Duration(min(secs, time.Hour.Seconds())*float64(time.Second)), time.Second), true
	}
	if t, err := http.ParseTime(v); err == nil {
		if d := t.Sub(now); d > 0 {
			return min(d, time.Hour), true
		}
	}
	return 0, false
}

// Error describes the attempt for logs and results: the status, the API's
// code and message (cut short), or why no answer came. It never includes
// the request's headers, so it cannot carry a token.
func (v *Verdict) Error() string {
	switch {
	case !v.Answered():
		return v.cause
	case v.redirect != "":
		// "HTTP 308" alone left an operator whose every call was
		// redirected (an API host that moved, a proxy's sign-in page)
		// with nothing to go on.
		return fmt.Sprintf("HTTP %d: redirected to %s, not followed (the request carries the token)", v.Status, v.redirect)
	case v.Err == nil:
		return fmt.Sprintf("HTTP %d", v.Status)
	}
	// A message null, empty or blank (any member may be) says nothing:
	// the status and the code alone, without a colon before nothing.
	msg := shortened(strings.TrimSpace(v.Err.Message), 300)
	switch {
	case msg == "" && v.Err.Code == "":
		return fmt.Sprintf("HTTP %d", v.Status)
	case msg == "":
		return fmt.Sprintf("HTTP %d %s", v.Status, v.Err.Code)
	case v.Err.Code == "":
		// The API has answered with an empty code and a message that
		// says what was wrong (an OData option it does not know).
		return fmt.Sprintf("HTTP %d: %s", v.Status, msg)
	}
	return fmt.Sprintf("HTTP %d %s: %s", v.Status, v.Err.Code, msg)
}

// APICode is the API's own error code, or "".
func (v *Verdict) APICode() string {
	if v.Err == nil {
		return ""
	}
	return v.Err.Code
}

// Answered says whether an HTTP answer came.
func (v *Verdict) Answered() bool { return v.Status != 0 }

// StatusLabel is the status as a metric label: the HTTP status the API
// documents (MDE-API.md: 200, 201, 400, 401, 403, 404, 429, 500) or 503
// (the service busy), else its class ("2xx" … "5xx", "other" outside
// 100–599), and "error" when no answer came. The label's values stay
// few whatever a proxy on the way answers: each is a series per tenant
// and API.
func (v *Verdict) StatusLabel() string {
	switch s := v.Status; {
	case !v.Answered():
		return "error"
	case s == 200, s == 201, s == 400, s == 401, s == 403, s == 404, s == 429, s == 500, s == 503:
		return strconv.Itoa(s)
	case s >= 100 && s < 600:
		return strconv.Itoa(s/100) + "xx"
	}
	return "other"
}
