package mde

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"regexp"
	"strings"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore/runtime"
	"github.com/Azure/azure-sdk-for-go/sdk/azidentity"
)

// TokenError is a failure to get a token: no API call was sent. Final means
// the login host refused the credentials; otherwise it may work later.
//
// Its text is fixed, built from its fields only: the identity library's
// error text and the login host's answer can hold a token or a secret, so
// neither is kept, printed or unwrapped.
type TokenError struct {
	Final bool
	// Status is the HTTP status of the login host's error answer; 0 when
	// there was none.
	Status int
	// AADSTS is the Entra ID error code, such as "AADSTS7000215", when the
	// login host gave one.
	AADSTS string
	// CorrelationID is the login host's correlation id of the failed
	// request (a GUID), when it gave one: Microsoft support asks for it.
	CorrelationID string
	// Host is the login host, such as "login.microsoftonline.com"; ""
	// for a managed identity, whose tokens come from the managed
	// identity endpoint.
	Host string
	// File is the credential file that could not be read or used, when
	// that is the failure.
	File string
	// RetryAfter is the least wait before the token is asked for again:
	// the Retry-After of a login host's 429 (MinRetryAfter when it gives
	// none) or of another answer that is not final; 0 otherwise.
	RetryAfter time.Duration

	failure tokenFailure
	// managed says the token was asked of the managed identity endpoint
	// (the instance metadata service, or IDENTITY_ENDPOINT), not of the
	// login host.
	managed bool
	// page says the login host's error answer is not Entra ID's (no
	// OAuth error, no AADSTS code): a proxy's or a web server's.
	page bool
	// scope says the login host refused the scope asked for (a resource
	// the tenant does not know, a scope not of the form
	// "<resource>/.default"), not the credentials.
	scope  bool
	detail string // why a credential file could not be read: the setting and the reason, never the path or content
	// unreached says, in a fixed text, why the login host or the
	// identity endpoint could not be reached, when the transport said
	// (noAnswerCause); "" otherwise.
	unreached string
	cause     error // only the context's error, which holds no secret
	err       error // what went wrong, when no field says it; never printed
}

// tokenFailure says which fixed text a TokenError has.
type tokenFailure int

const (
	failOther       tokenFailure = iota // no token, no request; the zero value
	failRefused                         // the login host answered an error status
	failUnreadable                      // the login host's answer could not be decoded
	failNoAnswer                        // the login host could not be reached in time
	failUnknown                         // the identity library gave no token, for another reason
	failCredential                      // the local credential could not be loaded
	failOtherTenant                     // the managed identity's token is of another tenant than tenantId
)

func (e *TokenError) Error() string {
	switch e.failure {
	case failRefused:
		return e.refusedText()
	case failUnreadable:
		return "get token: the answer of " + e.asked() + " could not be read"
	case failNoAnswer:
		if e.unreached != "" {
			return "get token: no answer from " + e.asked() + ": " + e.unreached
		}
		return "get token: no answer from " + e.asked()
	case failUnknown:
		return "get token: " + e.asked() + " gave no token"
	case failOtherTenant:
		return "get token: " + e.asked() + " gave a token of another Entra ID tenant than the tenant's tenantId: a managed identity acts in its own tenant only; give the identity's tenantId, or this tenant an application of its own"
	case failCredential:
		if e.detail != "" {
			return "get token: " + e.detail
		}
		if e.File != "" {
			return "get token: the credential file " + e.File + " could not be read or used"
		}
		return "get token: the credential could not be loaded"
	default:
		return "get token: no token, no request sent"
	}
}

// failureReason is the error's reason among TokenFailureReasons.
func (e *TokenError) failureReason() string {
	switch {
	case e.Final:
		return TokenRefused
	case e.failure == failRefused && e.Status == http.StatusTooManyRequests:
		return TokenThrottled
	case e.failure == failRefused, e.failure == failUnreadable:
		return TokenErrorAnswer
	case e.failure == failNoAnswer:
		return TokenNoAnswer
	case e.failure == failCredential:
		return TokenCredential
	}
	return TokenOther
}

// refusedText is the text of a failRefused error: the login host's status,
// what the refusal points at, and its codes.
func (e *TokenError) refusedText() string {
	what := fmt.Sprintf("answered HTTP %d", e.Status)
	switch {
	case e.page:
		what += " without an error of Entra ID's (a proxy's or another server's page?)"
	case e.Final && e.scope:
		// The government clouds' default scopes are a guess: the
		// setting that changes it is named, not the credentials,
		// which are not what was refused.
		what = "refused the token's scope, which the tenant's scope setting (or its cloud's default) gives"
	case e.Final:
		what = refusals[e.AADSTS]
		switch {
		case what != "":
		case e.managed:
			what = "refused the identity: check that the managed identity is assigned to this host (clientId names a user-assigned one)"
		default:
			what = "refused the credentials: check the tenant's tenantId, clientId and its secret, certificate or federated token"
		}
	case e.Status == http.StatusTooManyRequests:
		what += ": it throttles the application's token requests; tried again after its Retry-After"
	}
	codes := []string{fmt.Sprintf("HTTP %d", e.Status)}
	if e.AADSTS != "" {
		codes = append(codes, e.AADSTS)
	}
	if e.CorrelationID != "" {
		codes = append(codes, "correlation id "+e.CorrelationID)
	}
	return fmt.Sprintf("get token: %s %s (%s)", e.asked(), what, strings.Join(codes, ", "))
}

// asked names what the token was asked of: a managed identity's failures
// named the login host, which it never contacts, and sent an operator to
// the wrong network path.
func (e *TokenError) asked() string {
	if e.managed {
		return "the managed identity endpoint"
	}
	return "the login host " + e.Host
}

// Unwrap returns the context's error when the context ended the attempt,
// so that errors.Is(err, context.DeadlineExceeded) works; nothing else.
func (e *TokenError) Unwrap() error { return e.cause }

var (
	aadstsPattern      = regexp.MustCompile(`AADSTS\d{1,12}`)
	correlationPattern = regexp.MustCompile(`(?i)correlation[ _]id\W{1,4}([0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})\b`)
	guidPattern        = regexp.MustCompile(`^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$`)
)

// classifyTokenError turns the identity library's error into a TokenError
// holding only the status, the AADSTS code and the correlation id. The
// library's text is read to tell the failures apart and to find the codes,
// never copied. managed says the token was asked of the managed identity
// endpoint, whose answers are not Entra ID's.
func classifyTokenError(ctx context.Context, host string, managed bool, err error) *TokenError {
	te := &TokenError{Host: host, managed: managed}
	text := err.Error()
	var afe *azidentity.AuthenticationFailedError
	switch {
	case errors.As(err, &afe) && afe.RawResponse != nil:
		s := afe.RawResponse.StatusCode
		te.failure, te.Status = failRefused, s
		le := readLoginError(afe.RawResponse)
		te.AADSTS, te.CorrelationID, te.scope, te.page = le.aadsts, le.correlationID, le.scope, le.page && !managed
		// A page that is not Entra ID's (an egress proxy's "blocked by
		// policy") refuses no credentials: told so, every request of the
		// tenant failed unauthorized at once, and the operator was sent
		// to rotate a secret that works.
		te.Final = s >= 400 && s < 500 && s != http.StatusTooManyRequests && s != http.StatusRequestTimeout && !le.transient && !te.page
		te.RetryAfter = loginRetryAfter(afe.RawResponse, te.Final)
	case ctx.Err() != nil:
		te.failure, te.cause = failNoAnswer, ctx.Err()
	case strings.Contains(text, "json decode error"):
		// MSAL puts the whole answer, token included, in this text.
		te.failure = failUnreadable
	case strings.Contains(text, "server response error"):
		te.failure, te.unreached = failNoAnswer, noAnswerCause(text)
	default:
		te.failure = failUnknown
	}
	if te.AADSTS == "" {
		te.AADSTS = aadstsPattern.FindString(text)
	}
	if te.CorrelationID == "" {
		if m := correlationPattern.FindStringSubmatch(text); m != nil {
			te.CorrelationID = m[1]
		}
	}
	return te
}

// noAnswerCause names, in a fixed text, why the transport reached no
// answer, from the identity library's error text (its chain of errors
// ends in text: the library formats its transport's error into it); ""
// when the text says nothing known. The text itself is never shown: it
// may hold what the login host said.
func noAnswerCause(text string) string {
	switch {
	case strings.Contains(text, proxyRefusedText+" 407"):
		return "the proxy that HTTPS_PROXY names asks for a user name and password, and its URL gives none or others (http://user:password@host:port)"
	case strings.Contains(text, proxyRefusedText):
		return "the proxy that HTTPS_PROXY names refused to open a connection to it (is the host among those it lets through?)"
	case strings.Contains(text, "proxyconnect "):
		return "the proxy that HTTPS_PROXY names could not be reached"
	case strings.Contains(text, "no such host"):
		return "its name does not resolve (check the DNS; where the internet is reached through a proxy, set HTTPS_PROXY)"
	case strings.Contains(text, "x509: "), strings.Contains(text, "tls: failed to verify"):
		return "its TLS certificate is not accepted: not trusted, expired or of another name (a TLS-inspecting proxy's CA goes in the tenant's caFile)"
	case strings.Contains(text, "connection refused"):
		return "the connection was refused"
	case strings.Contains(text, "i/o timeout"):
		return "the connection timed out"
	}
	return ""
}

// loginRetryAfter is the wait an error answer of the login host asks
// for: its Retry-After, read against its Date when it has one; at least
// MinRetryAfter for a 429.
func loginRetryAfter(resp *http.Response, final bool) time.Duration {
	if final {
		return 0
	}
	now := time.Now()
	if d, err := http.ParseTime(resp.Header.Get("Date")); err == nil {
		now = d
	}
	if resp.StatusCode == http.StatusTooManyRequests {
		return retryAfter(resp.Header.Get("Retry-After"), now)
	}
	d, _ := parseRetryAfter(resp.Header.Get("Retry-After"), now)
	return d
}

// loginError is what an error answer of the login host says.
type loginError struct {
	aadsts, correlationID string
	// transient says the failure is passing: error
	// "temporarily_unavailable" (AADSTS90033, "A transient error has
	// occurred. Please try again."), which Microsoft's guidance has
	// retried whatever the status ("Handling error codes in your
	// application"), so a 400 with it does not refuse the credentials.
	transient bool
	// scope says the scope asked for was refused (error invalid_scope or
	// invalid_resource, or one of scopeCodes).
	scope bool
	// page says the answer was read and is not Entra ID's: it has
	// neither an OAuth error member nor an AADSTS code (a proxy's or a
	// web server's page).
	page bool
}

// readLoginError reads the AADSTS code and the correlation id from an
// Entra ID error answer, and what they say. Only values of the expected
// shape are kept.
func readLoginError(resp *http.Response) loginError {
	var le loginError
	body, err := runtime.Payload(resp)
	if err != nil {
		return le
	}
	var e struct {
		Error         string  `json:"error"`
		Codes         []int64 `json:"error_codes"`
		Description   string  `json:"error_description"`
		CorrelationID string  `json:"correlation_id"`
	}
	if json.Unmarshal(body, &e) != nil {
		// Not JSON: look for the codes in the text.
		if m := correlationPattern.FindSubmatch(body); m != nil {
			le.correlationID = string(m[1])
		}
		le.aadsts = string(aadstsPattern.Find(body))
		le.scope, le.page = scopeCodes[le.aadsts], le.aadsts == ""
		return le
	}
	le.transient = e.Error == "temporarily_unavailable"
	switch {
	case len(e.Codes) > 0 && e.Codes[0] > 0:
		le.aadsts = fmt.Sprintf("AADSTS%d", e.Codes[0])
	default:
		le.aadsts = aadstsPattern.FindString(e.Description)
	}
	if guidPattern.MatchString(e.CorrelationID) {
		le.correlationID = e.CorrelationID
	} else if m := correlationPattern.FindStringSubmatch(e.Description); m != nil {
		le.correlationID = m[1]
	}
	le.scope = e.Error == "invalid_scope" || e.Error == "invalid_resource" || scopeCodes[le.aadsts]
	le.page = e.Error == "" && le.aadsts == ""
	return le
}

// refusals say what Entra ID's most common refusals of an application's
// credentials point at, and what to do. Not all are the credentials: an
// unknown tenant or application, or a Conditional Access policy, told
// "refused the credentials", sent an operator to rotate a secret that
// works.
var refusals = map[string]string{
	"AADSTS7000215": "refused the client secret: it is not one of the application's; give a secret's value (not its secret ID)",
	"AADSTS7000222": "refused the client secret, which expired: add a new one to the application and give it to the worker",
	"AADSTS90002":   "does not know the tenant: check the tenant's tenantId and its cloud",
	"AADSTS700016":  "does not know the application in the tenant: check clientId and tenantId, and that the application is consented in the tenant",
	"AADSTS53003":   "blocked the token by a Conditional Access policy: exclude the application from it (the credentials are right)",
	"AADSTS700024":  "refused the signed assertion's times: check this host's clock (or renew the federated token)",
	"AADSTS50126":   "refused the credentials as invalid: check clientId and the secret or certificate",
	"AADSTS70021":   "found no federated credential of the application matching the token: check its issuer and subject",
}

// scopeCodes are Entra ID's codes of a refused scope: AADSTS500011 (the
// resource principal was not found in the tenant), AADSTS70011 (the
// scope is not valid), AADSTS1002012 (a client credentials request's
// scope without "/.default").
var scopeCodes = map[string]bool{"AADSTS500011": true, "AADSTS70011": true, "AADSTS1002012": true}
