package mde

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/contoso-secops/mde-offboard/offboard"
)

// apiErrorBody is an error body in the API's shape.
func apiErrorBody(code, message string) []byte {
	return []byte(`{"error":{"code":"` + code + `","message":"` + message + `","target":"0f6a6d7c-5a3e-4c1f-9b1e-3c1d2e4f5a6b"}}`)
}

// testNow is the caller's clock in these tests.
var testNow = time.Date(2026, 11, 24, 10, 0, 0, 0, time.UTC)

// httpReason is the reason an HTTP answer of the class and failure code
// must get: one verdict per answer.
func httpReason(c Class, code string) Reason {
	switch c {
	case Success:
		return ReasonSuccess
	case AlreadyPending:
		return ReasonAlreadyPending
	case Throttled:
		return ReasonThrottled
	case Retry:
		return ReasonServerError
	case NotFound:
		return ReasonNotFound
	}
	return map[string]Reason{
		offboard.CodeUnauthorized: ReasonUnauthorized, offboard.CodeForbidden: ReasonForbidden,
		offboard.CodeUnsupportedOS: ReasonUnsupportedOS, offboard.CodeUnsupportedClient: ReasonUnsupportedClient,
		offboard.CodeAPIRejected: ReasonRejected,
	}[code]
}

func TestClassify(t *testing.T) {
	t.Parallel()

	const quotaMsg = "API calls quota exceeded! maximum allowed 1500 per 01:00:00"
	ra := func(v string) http.Header { return http.Header{"Retry-After": {v}} }

	tests := []struct {
		name   string
		status int
		header http.Header
		body   []byte

		class       Class
		failureCode string
		apiCode     string
		message     string // also expected in Error() when apiCode is set
		retryAfter  time.Duration
	}{
		// 2xx: success, whatever the body says.
		{name: "200 action", status: 200, body: []byte(`{"id":"5382f7ea-7557-4ab7-9782-d50480024a4e","type":"Offboard","status":"Pending"}`), class: Success},
		{name: "201 action", status: 201, body: []byte(`{"id":"5382f7ea-7557-4ab7-9782-d50480024a4e","type":"Offboard","status":"Pending"}`), class: Success},
		{name: "204 empty", status: 204, class: Success},
		{name: "200 with an error-shaped body is not parsed", status: 200, body: apiErrorBody("BadRequest", "x"), class: Success},

		// 400: what the API refused stays refused, except a pending action.
		{name: "400 BadRequest", status: 400, body: apiErrorBody("BadRequest", "Invalid request"), class: Final, failureCode: offboard.CodeAPIRejected, apiCode: "BadRequest", message: "Invalid request"},
		{name: "400 ODataError", status: 400, body: apiErrorBody("ODataError", "Invalid filter clause"), class: Final, failureCode: offboard.CodeAPIRejected, apiCode: "ODataError", message: "Invalid filter clause"},
		{name: "400 InvalidInput", status: 400, body: apiErrorBody("InvalidInput", "Invalid machine id"), class: Final, failureCode: offboard.CodeAPIRejected, apiCode: "InvalidInput", message: "Invalid machine id"},
		{name: "400 InvalidRequestBody", status: 400, body: apiErrorBody("InvalidRequestBody", "Request body is incorrect"), class: Final, failureCode: offboard.CodeAPIRejected, apiCode: "InvalidRequestBody", message: "Request body is incorrect"},
		{name: "400 MissingRequiredParameter", status: 400, body: apiErrorBody("MissingRequiredParameter", "Parameter Comment is missing"), class: Final, failureCode: offboard.CodeAPIRejected, apiCode: "MissingRequiredParameter", message: "Parameter Comment is missing"},
		{name: "400 OsPlatformNotSupported", status: 400, body: apiErrorBody("OsPlatformNotSupported", "Offboarding is not supported for macOS"), class: Final, failureCode: offboard.CodeUnsupportedOS, apiCode: "OsPlatformNotSupported", message: "Offboarding is not supported for macOS"},
		{name: "400 ClientVersionNotSupported", status: 400, body: apiErrorBody("ClientVersionNotSupported", "Client version does not support this action"), class: Final, failureCode: offboard.CodeUnsupportedClient, apiCode: "ClientVersionNotSupported", message: "Client version does not support this action"},
		{name: "400 MaximumBatchSizeExceeded", status: 400, body: apiErrorBody("MaximumBatchSizeExceeded", "Maximum batch size exceeded"), class: Final, failureCode: offboard.CodeAPIRejected, apiCode: "MaximumBatchSizeExceeded", message: "Maximum batch size exceeded"},
		{name: "400 ActiveRequestAlreadyExists", status: 400, body: apiErrorBody("ActiveRequestAlreadyExists", "Action is already in progress."), class: AlreadyPending, apiCode: "ActiveRequestAlreadyExists", message: "Action is already in progress."},
		// The documentation gives the duplicate's refusal as a 400 with
		// the message "Action is already in progress" and no code.
		{name: "400 already in progress under another code", status: 400, body: apiErrorBody("BadRequest", "Action is already in progress."), class: AlreadyPending, failureCode: offboard.CodeAPIRejected, apiCode: "BadRequest", message: "Action is already in progress."},
		{name: "400 ActiveRequestAlreadyExists in another case", status: 400, body: apiErrorBody("activeRequestAlreadyExists", "Duplicate"), class: AlreadyPending, apiCode: "activeRequestAlreadyExists", message: "Duplicate"},
		{name: "400 OsPlatformNotSupported in another case", status: 400, body: apiErrorBody("OSPlatformNotSupported", "not supported"), class: Final, failureCode: offboard.CodeUnsupportedOS, apiCode: "OSPlatformNotSupported", message: "not supported"},
		{name: "400 unknown code", status: 400, body: apiErrorBody("SomethingNew", "new"), class: Final, failureCode: offboard.CodeAPIRejected, apiCode: "SomethingNew", message: "new"},
		{name: "400 non-JSON body", status: 400, body: []byte("Bad Request"), class: Final, failureCode: offboard.CodeAPIRejected},

		// 401, 403.
		{name: "401 Unauthorized", status: 401, body: apiErrorBody("Unauthorized", "Unauthorized"), class: Final, failureCode: offboard.CodeUnauthorized, apiCode: "Unauthorized", message: "Unauthorized"},
		{name: "401 empty body", status: 401, class: Final, failureCode: offboard.CodeUnauthorized},
		{name: "403 Forbidden missing roles", status: 403, body: apiErrorBody("Forbidden", "Missing application roles. API required roles: Machine.Offboard"), class: Final, failureCode: offboard.CodeForbidden, apiCode: "Forbidden", message: "Missing application roles. API required roles: Machine.Offboard"},
		{name: "403 DisabledFeature", status: 403, body: apiErrorBody("DisabledFeature", "Feature is disabled"), class: Final, failureCode: offboard.CodeForbidden, apiCode: "DisabledFeature", message: "Feature is disabled"},
		{name: "403 DisallowedOperation", status: 403, body: apiErrorBody("DisallowedOperation", "Operation is not allowed"), class: Final, failureCode: offboard.CodeForbidden, apiCode: "DisallowedOperation", message: "Operation is not allowed"},

		// 404: checked again by the caller before it is final.
		{name: "404 NotFound", status: 404, body: apiErrorBody("NotFound", "Machine was not found"), class: NotFound, failureCode: offboard.CodeMachineNotFound, apiCode: "NotFound", message: "Machine was not found"},
		{name: "404 ResourceNotFound", status: 404, body: apiErrorBody("ResourceNotFound", "Machine 1e5bc9d7 was not found"), class: NotFound, failureCode: offboard.CodeMachineNotFound, apiCode: "ResourceNotFound", message: "Machine 1e5bc9d7 was not found"},
		// A 404 that is not the API's about a device: a path it has no
		// resource for, a web server's page. Looked at again, then
		// api_rejected, not machine_not_found.
		{name: "404 route miss", status: 404, body: apiErrorBody("NotFound", "No HTTP resource was found that matches the request URI 'https://api.security.microsoft.com/api/api/machines/x/offboard'."), class: NotFound, failureCode: offboard.CodeAPIRejected, apiCode: "NotFound", message: "No HTTP resource was found that matches the request URI 'https://api.security.microsoft.com/api/api/machines/x/offboard'."},
		{name: "404 web server page", status: 404, body: []byte("404 page not found\n"), class: NotFound, failureCode: offboard.CodeAPIRejected},

		// 429: matched on the status; the pause comes from Retry-After.
		{name: "429 Retry-After seconds", status: 429, header: ra("7"), body: apiErrorBody("429", quotaMsg), class: Throttled, apiCode: "429", message: quotaMsg, retryAfter: 7 * time.Second},
		{name: "429 Retry-After fractional", status: 429, header: ra("1.5"), body: apiErrorBody("429", quotaMsg), class: Throttled, apiCode: "429", message: quotaMsg, retryAfter: 1500 * time.Millisecond},
		{name: "429 Retry-After missing", status: 429, body: apiErrorBody("429", quotaMsg), class: Throttled, apiCode: "429", message: quotaMsg, retryAfter: MinRetryAfter},
		{name: "429 Retry-After garbage", status: 429, header: ra("soon"), body: apiErrorBody("429", quotaMsg), class: Throttled, apiCode: "429", message: quotaMsg, retryAfter: MinRetryAfter},
		{name: "429 Retry-After zero", status: 429, header: ra("0"), class: Throttled, retryAfter: MinRetryAfter},
		{name: "429 Retry-After negative", status: 429, header: ra("-5"), class: Throttled, retryAfter: MinRetryAfter},
		{name: "429 Retry-After infinite", status: 429, header: ra("+Inf"), class: Throttled, retryAfter: MinRetryAfter},
		{name: "429 Retry-After NaN", status: 429, header: ra("NaN"), class: Throttled, retryAfter: MinRetryAfter},
		{name: "429 Retry-After capped at an hour", status: 429, header: ra("7200"), class: Throttled, retryAfter: time.Hour},
		// Past what a float holds: a long pause all the same, not the
		// short one of a value that is no number.
		{name: "429 Retry-After of 400 digits", status: 429, header: ra(strings.Repeat("9", 400)), class: Throttled, retryAfter: time.Hour},
		{name: "429 Retry-After overflowing exponent", status: 429, header: ra("1e400"), class: Throttled, retryAfter: time.Hour},
		{name: "429 Retry-After HTTP-date in the past", status: 429, header: ra("Wed, 21 Oct 2015 07:28:00 GMT"), class: Throttled, retryAfter: MinRetryAfter},
		{name: "429 Retry-After HTTP-date beyond an hour", status: 429, header: ra(testNow.Add(3 * time.Hour).UTC().Format(http.TimeFormat)), class: Throttled, retryAfter: time.Hour},
		{name: "429 other body code", status: 429, header: ra("3"), body: apiErrorBody("TooManyRequests", "slow down"), class: Throttled, apiCode: "TooManyRequests", message: "slow down", retryAfter: 3 * time.Second},
		{name: "429 no body", status: 429, header: ra("3"), class: Throttled, retryAfter: 3 * time.Second},

		// 5xx and 408: try again.
		{name: "500 InternalServerError", status: 500, body: apiErrorBody("InternalServerError", "An error occurred"), class: Retry, apiCode: "InternalServerError", message: "An error occurred"},
		{name: "502 HTML from a proxy", status: 502, body: []byte("<html><head><title>502 Bad Gateway</title></head><body><center><h1>502 Bad Gateway</h1></center></body></html>"), class: Retry},
		{name: "503", status: 503, body: []byte("Service Unavailable"), class: Retry},
		// A 5xx that says when to come back: the repeat waits that long
		// at least. One that names nothing usable has no such wait.
		{name: "503 Retry-After seconds", status: 503, header: ra("40"), class: Retry, retryAfter: 40 * time.Second},
		{name: "503 Retry-After HTTP-date", status: 503, header: ra(testNow.Add(2 * time.Minute).UTC().Format(http.TimeFormat)), class: Retry, retryAfter: 2 * time.Minute},
		{name: "503 Retry-After capped at an hour", status: 503, header: ra("7200"), class: Retry, retryAfter: time.Hour},
		{name: "503 Retry-After garbage", status: 503, header: ra("soon"), class: Retry},
		{name: "503 Retry-After zero", status: 503, header: ra("0"), class: Retry},
		{name: "500 Retry-After", status: 500, header: ra("5"), body: apiErrorBody("InternalServerError", "An error occurred"), class: Retry, apiCode: "InternalServerError", message: "An error occurred", retryAfter: 5 * time.Second},
		{name: "504 empty", status: 504, class: Retry},
		{name: "408", status: 408, class: Retry},

		// Other answers: final.
		{name: "302 redirect", status: 302, class: Final, failureCode: offboard.CodeAPIRejected},
		{name: "405", status: 405, body: apiErrorBody("MethodNotAllowed", "no"), class: Final, failureCode: offboard.CodeAPIRejected, apiCode: "MethodNotAllowed", message: "no"},
		{name: "error is a string, not an object", status: 400, body: []byte(`{"error":"invalid_request"}`), class: Final, failureCode: offboard.CodeAPIRejected},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			a := Classify(tt.status, tt.header, tt.body, testNow)
			if a.Status != tt.status {
				t.Errorf("Status = %d, want %d", a.Status, tt.status)
			}
			// An error answer's body is not kept: it may quote the token.
			if want := tt.body; tt.status < 200 || tt.status > 299 {
				if a.Body != nil {
					t.Errorf("Body = %q, want none for an error answer", a.Body)
				}
			} else if string(a.Body) != string(want) {
				t.Errorf("Body = %q, want %q", a.Body, want)
			}
			if a.Class != tt.class {
				t.Errorf("Class = %v, want %v", a.Class, tt.class)
			}
			if want := httpReason(tt.class, tt.failureCode); a.Reason != want || !a.Sent {
				t.Errorf("Reason = %v (sent %v), want %v (sent)", a.Reason, a.Sent, want)
			}
			// A 403 for roles missing from the token asks for one too
			// (TestForbiddenForMissingRolesAsksForANewToken).
			rolesMissing := tt.status == http.StatusForbidden && strings.Contains(tt.message, "Missing application roles")
			if a.RefreshToken != (tt.status == http.StatusUnauthorized || rolesMissing) {
				t.Errorf("RefreshToken = %v for HTTP %d", a.RefreshToken, tt.status)
			}
			if a.FailureCode != tt.failureCode {
				t.Errorf("FailureCode = %q, want %q", a.FailureCode, tt.failureCode)
			}
			if got := a.APICode(); got != tt.apiCode {
				t.Errorf("APICode() = %q, want %q", got, tt.apiCode)
			}
			if a.RetryAfter != tt.retryAfter {
				t.Errorf("RetryAfter = %v, want %v", a.RetryAfter, tt.retryAfter)
			}
			msg := a.Error()
			if tt.apiCode != "" {
				if a.Err == nil || a.Err.Message != tt.message {
					t.Fatalf("Err = %+v, want message %q", a.Err, tt.message)
				}
				if a.Err.Target == "" {
					t.Errorf("Err.Target is empty, want the correlation id")
				}
				if !strings.Contains(msg, tt.apiCode) || !strings.Contains(msg, tt.message) {
					t.Errorf("Error() = %q, want it to hold %q and %q", msg, tt.apiCode, tt.message)
				}
				if !strings.HasPrefix(msg, "HTTP "+strconv.Itoa(tt.status)+" ") {
					t.Errorf("Error() = %q, want it to start with the status", msg)
				}
			} else if want := "HTTP " + strconv.Itoa(tt.status); msg != want {
				t.Errorf("Error() = %q, want %q", msg, want)
			}
		})
	}
}

// A Retry-After date is measured from the answer's Date, the API's own
// clock, when it has one: this host's clock an hour ahead or behind
// neither ends the pause at once nor stretches it to the hour.
func TestClassifyRetryAfterDateByTheAPIsClock(t *testing.T) {
	t.Parallel()
	h := http.Header{
		"Date":        {testNow.UTC().Format(http.TimeFormat)},
		"Retry-After": {testNow.Add(5 * time.Minute).UTC().Format(http.TimeFormat)},
	}
	for _, skew := range []time.Duration{time.Hour, -time.Hour} {
		if a := Classify(http.StatusTooManyRequests, h, nil, testNow.Add(skew)); a.RetryAfter != 5*time.Minute {
			t.Errorf("local clock off by %v: RetryAfter = %v, want 5m0s", skew, a.RetryAfter)
		}
	}
}

// An HTTP-date a few minutes ahead gives the time left until then; the
// date has a one-second resolution, hence the range.
func TestClassifyRetryAfterHTTPDate(t *testing.T) {
	t.Parallel()
	h := http.Header{"Retry-After": {testNow.Add(10 * time.Minute).UTC().Format(http.TimeFormat)}}
	a := Classify(http.StatusTooManyRequests, h, nil, testNow.Add(-time.Second/2))
	if a.Class != Throttled {
		t.Fatalf("Class = %v, want %v", a.Class, Throttled)
	}
	if a.RetryAfter != 10*time.Minute+time.Second/2 {
		t.Errorf("RetryAfter = %v, want 10m0.5s (the date less the caller's now)", a.RetryAfter)
	}
}

func TestClassString(t *testing.T) {
	t.Parallel()
	tests := []struct {
		c    Class
		want string
	}{
		{Success, "success"},
		{AlreadyPending, "already_pending"},
		{Retry, "retry"},
		{Throttled, "throttled"},
		{NotFound, "not_found"},
		{Final, "final"},
		{Class(42), "class(42)"},
	}
	for _, tt := range tests {
		if got := tt.c.String(); got != tt.want {
			t.Errorf("Class(%d).String() = %q, want %q", int(tt.c), got, tt.want)
		}
	}
}

func TestAnswerWithoutErrorBody(t *testing.T) {
	t.Parallel()
	a := &Verdict{Status: 503}
	if got := a.APICode(); got != "" {
		t.Errorf("APICode() = %q, want empty", got)
	}
	if got := a.Error(); got != "HTTP 503" {
		t.Errorf("Error() = %q, want %q", got, "HTTP 503")
	}
	a.Err = &APIError{}
	if got := a.Error(); got != "HTTP 503" {
		t.Errorf("Error() with an empty error body = %q, want %q", got, "HTTP 503")
	}
	// As the API has answered an OData option it does not know: the
	// message is what tells the operator what was wrong.
	a.Status, a.Err = 400, &APIError{Message: "Invalid ODataQueryOptions: Custom query option '$stop' is not allowed."}
	if got, want := a.Error(), "HTTP 400: Invalid ODataQueryOptions: Custom query option '$stop' is not allowed."; got != want {
		t.Errorf("Error() with a code-less error body = %q, want %q", got, want)
	}
}

// TestClassifyCutsALongAPICode: the API's error code goes as it is into
// the result (error.apiCode), its ledger entry and the log. An answer
// whose code runs to megabytes (a broken gateway) must not make a result
// too large to be stored: its request would come back for ever.
func TestClassifyCutsALongAPICode(t *testing.T) {
	t.Parallel()
	v := Classify(http.StatusBadRequest, nil, apiErrorBody(strings.Repeat("X", 2<<20), "refused"), testNow)
	if v.Class != Final || v.FailureCode != offboard.CodeAPIRejected {
		t.Errorf("verdict = %v %q, want final %q", v.Class, v.FailureCode, offboard.CodeAPIRejected)
	}
	if n := utf8.RuneCountInString(v.APICode()); n > 100 || !strings.HasPrefix(v.APICode(), "XXXX") {
		t.Errorf("APICode() has %d characters (%.10q...), want at most 100, from the answer's", n, v.APICode())
	}
	if n := utf8.RuneCountInString(v.Error()); n > 500 {
		t.Errorf("Error() has %d characters, want at most 500", n)
	}
}

// Attempts that got no HTTP answer: each maps to one verdict, and says
// whether the call may have reached the API.
func TestClassifyError(t *testing.T) {
	t.Parallel()
	cancelled, cancel := context.WithCancel(context.Background())
	cancel()
	expired, cancel2 := context.WithDeadline(context.Background(), testNow)
	defer cancel2()
	refused := &TokenError{Final: true, err: errors.New("AADSTS7000215")}
	unreachable := &TokenError{err: errors.New("dial tcp: connection refused")}
	tests := []struct {
		name   string
		ctx    context.Context
		err    error
		sent   bool
		class  Class
		reason Reason
		code   string
	}{
		{name: "credentials refused", ctx: context.Background(), err: refused, class: Final, reason: ReasonCredentialsRejected, code: offboard.CodeUnauthorized},
		{name: "login host unreachable", ctx: context.Background(), err: unreachable, class: Retry, reason: ReasonToken},
		{name: "wrapped token error", ctx: context.Background(), err: fmt.Errorf("x: %w", refused), class: Final, reason: ReasonCredentialsRejected, code: offboard.CodeUnauthorized},
		{name: "another credential's error", ctx: context.Background(), err: errors.New(`{"access_token":"eyJsecret"}`), class: Retry, reason: ReasonToken},
		{name: "request not built", ctx: context.Background(), err: fmt.Errorf("%w: bad URL", errBuild), class: Final, reason: ReasonRejected, code: offboard.CodeInternal},
		{name: "connection refused", ctx: context.Background(), err: &net.OpError{Op: "dial", Err: errors.New("connection refused")}, sent: true, class: Retry, reason: ReasonNetwork},
		{name: "timeout", ctx: expired, err: context.DeadlineExceeded, sent: true, class: Retry, reason: ReasonTimeout},
		{name: "net timeout", ctx: context.Background(), err: &net.DNSError{IsTimeout: true}, sent: true, class: Retry, reason: ReasonTimeout},
		{name: "caller cancelled", ctx: cancelled, err: context.Canceled, sent: true, class: Retry, reason: ReasonCancelled},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			v := ClassifyError(tt.ctx, tt.err, tt.sent)
			if v.Class != tt.class || v.Reason != tt.reason || v.Sent != tt.sent || v.FailureCode != tt.code || v.Status != 0 {
				t.Errorf("verdict = {%v %v sent=%v %q status %d}, want {%v %v sent=%v %q status 0}",
					v.Class, v.Reason, v.Sent, v.FailureCode, v.Status, tt.class, tt.reason, tt.sent, tt.code)
			}
			if v.Error() == "" || strings.Contains(v.Error(), "eyJsecret") {
				t.Errorf("message %q: empty, or holds what the credential's error said", v.Error())
			}
		})
	}
}

func TestReasonString(t *testing.T) {
	t.Parallel()
	seen := map[string]bool{}
	for _, r := range Reasons() {
		s := r.String()
		if s == "" || strings.HasPrefix(s, "reason(") || seen[s] {
			t.Errorf("reason %d has label %q (empty, unnamed or repeated)", int(r), s)
		}
		seen[s] = true
	}
	if got := Reason(99).String(); got != "reason(99)" {
		t.Errorf("Reason(99) = %q", got)
	}
}

// TestStatusLabelIsBounded: the documented statuses keep their number,
// any other its class, so a proxy's 418, 502 or 599 adds no series.
func TestStatusLabelIsBounded(t *testing.T) {
	t.Parallel()
	for status, want := range map[int]string{
		0: "error", 200: "200", 201: "201", 204: "2xx", 302: "3xx", 400: "400", 401: "401", 403: "403", 404: "404",
		418: "4xx", 429: "429", 500: "500", 502: "5xx", 503: "503", 504: "5xx", 599: "5xx", 99: "other", 600: "other", 999: "other",
	} {
		if got := (&Verdict{Status: status}).StatusLabel(); got != want {
			t.Errorf("status %d: label %q, want %q", status, got, want)
		}
	}
	labels := map[string]bool{}
	for status := range 1000 {
		labels[(&Verdict{Status: status}).StatusLabel()] = true
	}
	if len(labels) > 16 {
		t.Errorf("%d label values over the statuses 0-999, want at most 16: %v", len(labels), labels)
	}
}

// TestClassifyReadsWhatItCanOfAnErrorBody: an error body whose code is
// a number, or whose message or target is not a string, keeps the
// members that are strings, and classifies by them as a well-formed body
// does. Decoded whole, the body was dropped: the duplicate's refusal by
// its words was final api_rejected "HTTP 400", and every message lost.
func TestClassifyReadsWhatItCanOfAnErrorBody(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		name                 string
		status               int
		body                 string
		class                Class
		failureCode          string
		code, message, error string
	}{
		{"a number for the code", 400, `{"error":{"code":400,"message":"Action is already in progress."}}`,
			AlreadyPending, offboard.CodeAPIRejected, "", "Action is already in progress.", "HTTP 400: Action is already in progress."},
		{"an object for the message", 400, `{"error":{"code":"OsPlatformNotSupported","message":{"text":"macOS"},"target":"c8"}}`,
			Final, offboard.CodeUnsupportedOS, "OsPlatformNotSupported", "", "HTTP 400 OsPlatformNotSupported"},
		{"a list for the code, a number for the target", 403, `{"error":{"code":["Forbidden"],"message":"Missing application roles.","target":7}}`,
			Final, offboard.CodeForbidden, "", "Missing application roles.", "HTTP 403: Missing application roles."},
		{"a number for the code of a 429", 429, `{"error":{"code":429,"message":"API calls quota exceeded! maximum allowed 1500 per 01:00:00"}}`,
			Throttled, "", "", "API calls quota exceeded! maximum allowed 1500 per 01:00:00", "HTTP 429: API calls quota exceeded! maximum allowed 1500 per 01:00:00"},
		{"a token in a message beside a number", 401, `{"error":{"code":401,"message":"rejected: Bearer ` + testToken + `"}}`,
			Final, offboard.CodeUnauthorized, "", "rejected: Bearer " + redacted, "HTTP 401: rejected: Bearer " + redacted},
		{"error a string", 400, `{"error":"invalid_request"}`, Final, offboard.CodeAPIRejected, "", "", "HTTP 400"},
		{"not JSON", 400, `{"error":{"code":400,`, Final, offboard.CodeAPIRejected, "", "", "HTTP 400"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			v := Classify(tt.status, nil, []byte(tt.body), testNow)
			if v.Class != tt.class || v.FailureCode != tt.failureCode {
				t.Errorf("verdict = %v %q, want %v %q", v.Class, v.FailureCode, tt.class, tt.failureCode)
			}
			msg := ""
			if v.Err != nil {
				msg = v.Err.Message
			}
			if v.APICode() != tt.code || msg != tt.message || v.Error() != tt.error {
				t.Errorf("code %q, message %q, Error() %q; want %q, %q, %q", v.APICode(), msg, v.Error(), tt.code, tt.message, tt.error)
			}
			if strings.Contains(v.Error(), testToken) {
				t.Errorf("Error() = %q holds the token", v.Error())
			}
		})
	}
}

// TestErrorOfACodeWithoutMessage: the API's error object may give its
// code with a message null, empty, blank or left out ({"error": {"code":
// "NotFound"}}). The text for people then names the status and the code,
// without a colon that introduces nothing.
func TestErrorOfACodeWithoutMessage(t *testing.T) {
	t.Parallel()
	for _, body := range []string{
		`{"error":{"code":"ResourceNotFound"}}`,
		`{"error":{"code":"ResourceNotFound","message":null}}`,
		`{"error":{"code":"ResourceNotFound","message":""}}`,
		`{"error":{"code":"ResourceNotFound","message":" \t\r\n"}}`,
	} {
		v := Classify(http.StatusNotFound, nil, []byte(body), testNow)
		if got, want := v.Error(), "HTTP 404 ResourceNotFound"; got != want {
			t.Errorf("%s: Error() = %q, want %q", body, got, want)
		}
	}
	v := Classify(http.StatusBadRequest, nil, []byte(`{"error":{"code":"","message":"  "}}`), testNow)
	if got, want := v.Error(), "HTTP 400"; got != want {
		t.Errorf("blank message, no code: Error() = %q, want %q", got, want)
	}
}
