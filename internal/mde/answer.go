package mde

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net/http"
	"strconv"
	"time"

	"github.com/contoso-secops/mde-offboard/offboard"
)

// Class is what the worker does with an answer. Every answer of the API is
// classified once, here; the class drives the retry, the ack and the metric
// label.
type Class int

const (
	// Success is a 2xx answer.
	Success Class = iota
	// AlreadyPending means the device has an unfinished action of the same
	// type (400 ActiveRequestAlreadyExists).
	AlreadyPending
	// Retry is a network error, timeout or 5xx: try again with backoff.
	Retry
	// Throttled is a 429: pause the tenant for RetryAfter, then try again.
	Throttled
	// NotFound is a 404. The API answers it now and then for devices that
	// exist, so look again a few times before it is final.
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

// APIError is the error body the API sends:
// {"error": {"code": "...", "message": "...", "target": "<correlation id>"}}.
type APIError struct {
	Code    string `json:"code"`
	Message string `json:"message"`
	Target  string `json:"target,omitempty"`
}

// Answer is one HTTP exchange with the API, classified.
type Answer struct {
	Status     int
	Class      Class
	Body       []byte        // the body as received (size-capped)
	Err        *APIError     // the parsed error body, if any
	RetryAfter time.Duration // from a 429
	// FailureCode is the contract's failure code for a final answer.
	FailureCode string
}

// Classify turns an HTTP answer into an Answer. It is the only place that
// interprets status codes and API error codes.
func Classify(status int, header http.Header, body []byte) *Answer {
	a := &Answer{Status: status, Body: body}
	if status < 200 || status >= 300 {
		var eb struct {
			Error *APIError `json:"error"`
		}
		if json.Unmarshal(body, &eb) == nil && eb.Error != nil {
			a.Err = eb.Error
		}
	}
	code := ""
	if a.Err != nil {
		code = a.Err.Code
	}
	switch {
	case status >= 200 && status < 300:
		a.Class = Success
	case status == http.StatusTooManyRequests:
		// Matched on the status: the body's code has been seen as "429".
		a.Class = Throttled
		a.RetryAfter = retryAfter(header.Get("Retry-After"))
	case status >= 500 || status == http.StatusRequestTimeout:
		a.Class = Retry
	case status == http.StatusNotFound:
		a.Class, a.FailureCode = NotFound, offboard.CodeMachineNotFound
	case status == http.StatusUnauthorized:
		a.Class, a.FailureCode = Final, offboard.CodeUnauthorized
	case status == http.StatusForbidden:
		a.Class, a.FailureCode = Final, offboard.CodeForbidden
	case status == http.StatusBadRequest && code == "ActiveRequestAlreadyExists":
		a.Class = AlreadyPending
	case status == http.StatusBadRequest && code == "OsPlatformNotSupported":
		a.Class, a.FailureCode = Final, offboard.CodeUnsupportedOS
	case status == http.StatusBadRequest && code == "ClientVersionNotSupported":
		a.Class, a.FailureCode = Final, offboard.CodeUnsupportedClient
	default:
		// 400 InvalidRequestBody, MissingRequiredParameter, InvalidInput,
		// BadRequest, ODataError, and any other 4xx: the API refused what it
		// was sent, and sending it again will not change that.
		a.Class, a.FailureCode = Final, offboard.CodeAPIRejected
	}
	return a
}

// MinRetryAfter is the pause taken after a 429 that names no usable
// Retry-After.
const MinRetryAfter = 10 * time.Second

func retryAfter(v string) time.Duration {
	if secs, err := strconv.ParseFloat(v, 64); err == nil && secs > 0 && !math.IsNaN(secs) && !math.IsInf(secs, 0) {
		// Capped before converting: a huge value would overflow Duration.
		return max(time.Duration(min(secs, time.Hour.Seconds())*float64(time.Second)), time.Second)
	}
	if t, err := http.ParseTime(v); err == nil {
		if d := time.Until(t); d > 0 {
			return min(d, time.Hour)
		}
	}
	return MinRetryAfter
}

// Error describes the answer for logs and results. It never includes the
// request's headers, so it cannot carry a token.
func (a *Answer) Error() string {
	if a.Err != nil && a.Err.Code != "" {
		return fmt.Sprintf("HTTP %d %s: %s", a.Status, a.Err.Code, a.Err.Message)
	}
	return fmt.Sprintf("HTTP %d", a.Status)
}

// APICode is the API's own error code, or "".
func (a *Answer) APICode() string {
	if a.Err == nil {
		return ""
	}
	return a.Err.Code
}

// ErrTransport marks errors where no HTTP answer arrived: the call may or
// may not have reached the server.
var ErrTransport = errors.New("no answer from the API")
