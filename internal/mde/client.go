package mde

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptrace"
	"net/url"
	"strconv"
	"strings"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"

	"github.com/contoso-secops/mde-offboard/offboard"
)

// API names: each has its own quota and limiter.
const (
	APIOffboard       = "offboard"       // POST /api/machines/{id}/offboard
	APIMachines       = "machines"       // GET /api/machines
	APIMachineActions = "machineactions" // GET /api/machineactions
)

// APIs lists the API names in a fixed order.
var APIs = []string{APIOffboard, APIMachines, APIMachineActions}

// MaxBody caps how much of an answer is read.
const MaxBody = 4 << 20

// MaxListBody caps how much of a page of the device inventory is read: a
// full page holds 10,000 device records of one to two kilobytes each.
const MaxListBody = 64 << 20

// MaxPage is the most devices one page of GET /api/machines holds.
const MaxPage = 10000

// Client calls one tenant's Defender for Endpoint API. It makes one HTTP
// request per method call: retries, quota and backoff belong to the
// caller, which knows the tenant's limits. An offboard is sent exactly
// once; a read at most twice: Go's transport may send it again on a
// connection that failed under it (HTTP/1.1: a reused connection the
// server closed; HTTP/2: a stream the server refused, shut down or reset),
// once the caller has taken a place in the quota for it (WithResend).
type Client struct {
	base    string
	scope   string
	cred    azcore.TokenCredential
	http    *http.Client
	timeout time.Duration
	now     func() time.Time
}

// DefaultTimeout bounds one API call, getting its token included.
const DefaultTimeout = 30 * time.Second

// Options configure a Client.
type Options struct {
	Cloud      Cloud
	Credential azcore.TokenCredential
	HTTPClient *http.Client     // nil: a client with sane timeouts
	Timeout    time.Duration    // per call, default DefaultTimeout
	Now        func() time.Time // reads a Retry-After date; default time.Now
}

// NewClient returns a client for one tenant.
func NewClient(o Options) *Client {
	// Never follow a redirect: it could carry the bearer token elsewhere.
	hc := withoutRedirects(o.HTTPClient)
	if o.Timeout <= 0 {
		o.Timeout = DefaultTimeout
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	return &Client{base: o.Cloud.APIBaseURL, scope: o.Cloud.Scope, cred: o.Credential, http: hc, timeout: o.Timeout, now: o.Now}
}

// Timeout is how long one call may take, getting its token included.
func (c *Client) Timeout() time.Duration { return c.timeout }

// withoutRedirects returns a copy of hc (nil: a default client) that
// follows no redirect: the caller gets the redirect as the answer.
func withoutRedirects(hc *http.Client) *http.Client {
	var c http.Client
	if hc != nil {
		c = *hc
	}
	c.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	return &c
}

// Offboard asks the API to offboard one device: POST
// /api/machines/{id}/offboard with {"Comment": comment}.
func (c *Client) Offboard(ctx context.Context, machineID, comment string) *Verdict {
	body, err := json.Marshal(struct {
		Comment string `json:"Comment"` // the API is case-sensitive
	}{comment})
	if err != nil {
		return ClassifyError(ctx, fmt.Errorf("%w: %w", errBuild, err), false)
	}
	return c.do(ctx, http.MethodPost, "/api/machines/"+url.PathEscape(machineID)+"/offboard", nil, body)
}

// FindMachinesByName lists the devices whose computerDnsName equals name:
// a successful verdict's Named holds the first MaxNameMatches of them and
// their count, and its Body is nil. The list is read as it comes, a
// record at a time: a name shared by thousands of records (re-imaged or
// cloned devices) takes more than MaxBody to list.
func (c *Client) FindMachinesByName(ctx context.Context, name string) *Verdict {
	q := url.Values{"$filter": {"computerDnsName eq " + odataString(name)}}
	var named *NameMatches
	v := c.send(ctx, http.MethodGet, "/api/machines", q, nil, MaxListBody, func(r io.Reader, token string) {
		named = readNameMatches(r, name, token)
	})
	v = noDevices(v)
	if v.Class == Success {
		if named == nil { // the 404 that stands for no device
			named = &NameMatches{}
		}
		v.Named, v.Body = named, nil
	}
	return v
}

// ListMachines reads one page of the device inventory: GET /api/machines
// with the OData filter (see InactiveFilter), $top and $skip.
func (c *Client) ListMachines(ctx context.Context, filter string, top, skip int) *Verdict {
	q := url.Values{"$top": {strconv.Itoa(top)}, "$skip": {strconv.Itoa(skip)}}
	if filter != "" {
		q.Set("$filter", filter)
	}
	return noDevices(c.doLimit(ctx, http.MethodGet, "/api/machines", q, nil, MaxListBody))
}

// noDevices reads a 404 answer to GET /api/machines as the empty list it
// stands for: the List machines API answers 404 Not Found when there are
// no devices to list, not 200 with none. Its status stays 404 (for the
// metrics); a single device's 404 (GetMachine) is not this.
//
// Only the API's own answer is read so: its error body, and not the one
// it gives a path it has no resource for. A 404 without that body (a
// proxy's or web server's page) or naming no resource for the URI (an
// apiBaseURL with a path too many, ".../api") says the URL is wrong, not
// that there is no device: read as an empty list, a campaign plan would
// report no stale device and every name lookup would fail at once, with
// nothing pointing at the setting.
func noDevices(v *Verdict) *Verdict {
	if v.Class != NotFound || v.notTheAPIs() {
		return v
	}
	v.Class, v.Reason, v.FailureCode, v.Err = Success, ReasonSuccess, "", nil
	v.Body = []byte(`{"value":[]}`)
	return v
}

// notTheAPIs says whether a 404 is not the API's answer about a resource:
// it has no API error body, one with a member of another type than the
// API writes (another service's, {"error":{"code":404}}), or its message
// is the API's for a path it has no resource for (routeMiss).
func (v *Verdict) notTheAPIs() bool {
	return v.Err == nil || v.Err.odd || strings.HasPrefix(v.Err.Message, routeMiss)
}

// APIsOwn says whether an error answer carries the API's own error
// object ({"error": {"code": ..., "message": ...}}): a proxy's or a web
// server's page does not.
func (v *Verdict) APIsOwn() bool { return v.Err != nil && !v.Err.odd }

// routeMiss begins the API's message for a path it has no resource for
// (ASP.NET's): "No HTTP resource was found that matches the request URI
// '...'".
const routeMiss = "No HTTP resource was found"

// InactiveFilter is the OData filter of the onboarded devices last seen
// before cutoff whose healthStatus is one of health and osPlatform one of
// os (empty: any): "or" within a field, "and" across fields. The list of
// devices also holds those Device Discovery found and that were never
// onboarded (onboardingStatus CanBeOnboarded, Unsupported,
// InsufficientInfo): they have nothing to offboard, and listed, a plan
// counted them among the devices to offboard. The cutoff
// goes in whole seconds, rounded up: the API writes dates with seven
// digits after the second at most, and does not document whether its
// filter reads more. The list may then hold devices last seen in the
// part of a second after cutoff: the caller checks each device's
// lastSeen against cutoff itself.
func InactiveFilter(cutoff time.Time, health, os []string) string {
	whole := cutoff.UTC().Truncate(time.Second)
	if whole.Before(cutoff) {
		whole = whole.Add(time.Second)
	}
	parts := []string{"lastSeen lt " + whole.Format(time.RFC3339), "onboardingStatus eq " + odataString(Onboarded)}
	for _, f := range []struct {
		field  string
		values []string
	}{{"healthStatus", health}, {"osPlatform", os}} {
		if len(f.values) == 0 {
			continue
		}
		alts := make([]string, len(f.values))
		for i, v := range f.values {
			alts[i] = f.field + " eq " + odataString(v)
		}
		if len(alts) == 1 {
			parts = append(parts, alts[0])
		} else {
			parts = append(parts, "("+strings.Join(alts, " or ")+")")
		}
	}
	return strings.Join(parts, " and ")
}

// Onboarded is the onboardingStatus of a device onboarded to Defender
// for Endpoint, as the API spells it.
const Onboarded = "Onboarded"

// GetMachine reads one device record.
func (c *Client) GetMachine(ctx context.Context, machineID string) *Verdict {
	return c.do(ctx, http.MethodGet, "/api/machines/"+url.PathEscape(machineID), nil, nil)
}

// OffboardActions lists the Offboard actions of one device.
func (c *Client) OffboardActions(ctx context.Context, machineID string) *Verdict {
	q := url.Values{"$filter": {"machineId eq " + odataString(machineID) + " and type eq 'Offboard'"}}
	v := c.do(ctx, http.MethodGet, "/api/machineactions", q, nil)
	if v.Class == NotFound {
		// A list is not a device that may be missing for a moment, and
		// its 404 does not say that the device is gone (the list is only
		// filtered on it, and documented as 200 with the actions):
		// api_rejected, not machine_not_found.
		v.Class, v.FailureCode = Final, offboard.CodeAPIRejected
	}
	return v
}

// GetAction reads one Machine Action.
func (c *Client) GetAction(ctx context.Context, id string) *Verdict {
	return c.do(ctx, http.MethodGet, "/api/machineactions/"+url.PathEscape(id), nil, nil)
}

// odataString quotes a value for an OData filter: single quotes inside the
// value are doubled.
func odataString(v string) string { return "'" + strings.ReplaceAll(v, "'", "''") + "'" }

// do sends one request and classifies what came of it.
func (c *Client) do(ctx context.Context, method, path string, q url.Values, body []byte) *Verdict {
	return c.doLimit(ctx, method, path, q, body, MaxBody)
}

// doLimit is do reading at most limit bytes of the answer.
func (c *Client) doLimit(ctx context.Context, method, path string, q url.Values, body []byte, limit int64) *Verdict {
	return c.send(ctx, method, path, q, body, limit, nil)
}

// send is doLimit handing a successful answer's body, when stream is not
// nil, to stream as it comes, with the bearer token it must keep out of
// what it keeps, instead of reading it whole.
func (c *Client) send(ctx context.Context, method, path string, q url.Values, body []byte, limit int64, stream func(io.Reader, string)) *Verdict {
	// The timeout covers getting the token too: a login host that hangs
	// must not hold the call longer than an API host that hangs.
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	tok, err := c.cred.GetToken(ctx, policy.TokenRequestOptions{Scopes: []string{c.scope}})
	if err != nil {
		return ClassifyError(ctx, err, false)
	}
	u := c.base + path
	if len(q) > 0 {
		// Spaces as %20, which every reader of a query takes as a space:
		// how the API's OData parser reads '+' is not documented.
		u += "?" + strings.ReplaceAll(q.Encode(), "+", "%20")
	}
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, u, rd)
	if err != nil {
		return ClassifyError(ctx, fmt.Errorf("%w: %w", errBuild, redactURL(err)), false)
	}
	// Sent once, whatever the transport meets: with GetBody set, Go's
	// HTTP/2 transport sends a request again when the server resets its
	// stream with PROTOCOL_ERROR, on a new connection each time, until the
	// context ends (31,260 times in 30 s), though the server may have acted
	// on each. An offboard without an answer is an outcome unknown, which
	// the caller settles by looking for the action.
	req.GetBody = nil
	req.Header.Set("Authorization", "Bearer "+tok.Token)
	req.Header.Set("Accept", "application/json")
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	reqCtx, stop, unconnected := sendTwice(ctx)
	defer stop(nil)
	resp, err := c.http.Do(req.WithContext(reqCtx))
	if err != nil {
		if cause := context.Cause(reqCtx); errors.Is(cause, errSentAgain) || errors.Is(cause, errNoPlaceToSendAgain) {
			err = cause
		}
		err = fmt.Errorf("%s %s: %w", method, path, tokenScrubbed{redactURL(err), tok.Token})
		if unconnected() {
			// No connection was had (the host refused it or did not
			// answer, no name, a TLS handshake or a proxy's CONNECT
			// that failed): the request went nowhere. Counted as sent,
			// an API host that cannot be reached spent the tenant's
			// quota, and each offboard attempt was taken for one that
			// may have acted, to be looked for.
			return ClassifyError(ctx, errNoConnection{err}, false)
		}
		return ClassifyError(ctx, err, true)
	}
	defer func() { _ = resp.Body.Close() }()
	if stream != nil && resp.StatusCode >= 200 && resp.StatusCode < 300 {
		return c.streamed(ctx, resp, method+" "+path, limit, tok.Token, func(r io.Reader) { stream(r, tok.Token) })
	}
	return c.answered(ctx, resp, method+" "+path, limit, tok.Token, method == http.MethodPost)
}

// answered reads at most limit bytes of an answer to call, which sent
// token, and classifies it; post says the call was an offboard.
func (c *Client) answered(ctx context.Context, resp *http.Response, call string, limit int64, token string, post bool) *Verdict {
	data, err := readAnswer(resp, limit)
	switch {
	case err != nil && bodyDecides(resp.StatusCode):
		// Scrubbed as a transport error is: the body's reader quotes a
		// trailer line it cannot read, which may echo the token.
		return ClassifyError(ctx, fmt.Errorf("%s: read answer: %w", call, tokenScrubbed{err, token}), true)
	case err != nil:
		// The status says what to do whatever the body holds: a 429
		// whose body was cut or dripped past the call's time still
		// pauses the tenant for its Retry-After, and is not an answer
		// lost (which may have acted) to be sent again after a backoff.
		// Its details are left out: part of an error object reads as
		// none.
		data = nil
	}
	v := Classify(resp.StatusCode, resp.Header, withoutToken(data, token), c.now())
	if v.Status/100 == 3 {
		v.redirect = redirectTarget(resp, token)
	}
	if v.RefreshToken {
		v.refused = idOf(token)
	}
	if !post && v.Class == AlreadyPending {
		// Only an offboard can find an action already pending: a read
		// answered so was refused, and its result needs a failure code.
		v.Class, v.Reason, v.FailureCode = Final, ReasonRejected, offboard.CodeAPIRejected
	}
	return v
}

// redirectTarget is where a redirect points, as an error may show it:
// resolved against the request's URL, without user information, query
// or fragment (shownURL), the token and what looks like a credential
// replaced; "" without a Location that reads as a URL.
func redirectTarget(resp *http.Response, token string) string {
	loc, err := resp.Location()
	if err != nil {
		return ""
	}
	shown := shownURL(loc.String())
	if token != "" {
		shown = strings.ReplaceAll(shown, token, redacted)
	}
	return shortened(withoutCredentials(shown), 300)
}

// bodyDecides says whether an answer of status is classified by its body
// too: a success's is the answer itself, a 400's code tells a duplicate
// (ActiveRequestAlreadyExists) or an unsupported platform, and a 404's
// object tells the API's "not found" from a page that is not the API's.
// Any other status decides alone (Classify).
func bodyDecides(status int) bool {
	return status/100 == 2 || status == http.StatusBadRequest || status == http.StatusNotFound
}

// streamed classifies a successful answer whose body stream reads, at
// most limit bytes of it. An error reading the body (not the JSON in it:
// that is stream's to report) is an answer that did not come whole; its
// text has token replaced, as send's read error has.
func (c *Client) streamed(ctx context.Context, resp *http.Response, call string, limit int64, token string, stream func(io.Reader)) *Verdict {
	src := &readFailure{r: io.LimitReader(resp.Body, limit)}
	stream(src)
	if src.err != nil {
		return ClassifyError(ctx, fmt.Errorf("%s: read answer: %w", call, tokenScrubbed{src.err, token}), true)
	}
	return Classify(resp.StatusCode, resp.Header, nil, c.now())
}

// readFailure is a reader that keeps the first error of r other than
// io.EOF.
type readFailure struct {
	r   io.Reader
	err error
}

func (f *readFailure) Read(p []byte) (int, error) {
	n, err := f.r.Read(p)
	if err != nil && !errors.Is(err, io.EOF) && f.err == nil {
		f.err = err
	}
	return n, err
}

// tokenScrubbed is a transport error whose text has the bearer token
// replaced: Go's HTTP client quotes a status line, header or trailer it
// cannot read, which a server may have filled with the request's
// Authorization header.
type tokenScrubbed struct {
	err   error
	token string
}

func (e tokenScrubbed) Error() string {
	if e.token == "" {
		return e.err.Error()
	}
	return strings.ReplaceAll(e.err.Error(), e.token, redacted)
}

func (e tokenScrubbed) Unwrap() error { return e.err }

// withoutToken is an answer with the bearer token it may echo (a gateway
// that quotes the request's headers in its error) replaced, as sent or
// written with JSON escapes (\u002e for '.', \/ for '/'): an error
// answer's message reaches results, dead letters and logs, a successful
// one's body results and the ledger.
func withoutToken(data []byte, token string) []byte {
	if token == "" {
		return data
	}
	if bytes.Contains(data, []byte(token)) {
		data = bytes.ReplaceAll(data, []byte(token), []byte(redacted))
	}
	if bytes.IndexByte(data, '\\') < 0 {
		return data // no escape: no other way to write it
	}
	return withoutEscapedToken(data, token)
}

// withoutEscapedToken replaces the token in each JSON string of data
// that holds it once decoded; such a string is written anew, without
// the token, and everything else is left as it came. Only strings with
// an escape are decoded: the token as sent is already gone.
func withoutEscapedToken(data []byte, token string) []byte {
	var out []byte // nil until a string is written anew
	done := 0      // data[:done] is in out
	for i := 0; i < len(data); i++ {
		if data[i] != '"' {
			continue
		}
		end, escaped := i+1, false
		for ; end < len(data) && data[end] != '"'; end++ {
			if data[end] == '\\' {
				escaped = true
				end++ // the escaped byte
			}
		}
		if end >= len(data) {
			break // not closed: not JSON
		}
		var s string
		if escaped && json.Unmarshal(data[i:end+1], &s) == nil && strings.Contains(s, token) {
			out = append(out, data[done:i]...)
			out = appendJSONString(out, strings.ReplaceAll(s, token, redacted))
			done = end + 1
		}
		i = end
	}
	if out == nil {
		return data
	}
	return append(out, data[done:]...)
}

// appendJSONString appends s to b as a JSON string, with no more escapes
// than JSON needs.
func appendJSONString(b []byte, s string) []byte {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(s) // a string always encodes
	return append(b, bytes.TrimSuffix(buf.Bytes(), []byte("\n"))...)
}

// redacted stands for a credential taken out of an answer.
const redacted = "[redacted]"

// readAnswer reads at most limit bytes of resp's body. An answer that
// states its length is read into one buffer of that size, not grown from
// 512 bytes as io.ReadAll does.
func readAnswer(resp *http.Response, limit int64) ([]byte, error) {
	var buf bytes.Buffer
	if n := resp.ContentLength; n > 0 && n <= limit {
		// One read more finds the end: bytes.Buffer asks for MinRead free.
		buf.Grow(int(n) + bytes.MinRead)
	}
	_, err := buf.ReadFrom(io.LimitReader(resp.Body, limit))
	return buf.Bytes(), err
}

// errSentAgain ends a call whose request the transport was sending a
// third time.
var errSentAgain = errors.New("the transport began to send the request a third time: stopped")

// errNoPlaceToSendAgain ends a call whose request the transport was
// sending again when the caller had no place in the quota for it
// (WithResend).
var errNoPlaceToSendAgain = errors.New("the transport began to send the request again, with no place in the quota for it: stopped")

// resendKey carries a call's WithResend in its context.
type resendKey struct{}

// WithResend returns ctx for calls that ask take before the transport
// sends their request a second time. The server may have read and counted
// the first (a reused HTTP/1.1 connection it closed before answering, a
// stream it reset): the second is another call the API may count, which
// goes out only once take has taken its place in the quota, and which
// the caller counts as it counts the call. take answers at once; false
// stops the request, and the call ends without an answer. Without it, the
// second send goes ahead unasked.
func WithResend(ctx context.Context, take func() bool) context.Context {
	return context.WithValue(ctx, resendKey{}, take)
}

// sendTwice returns ctx for one request, cancelled with errSentAgain when
// the transport takes a connection for it after writing its headers twice:
// it is about to send it a third time. Go's HTTP/2 transport resends a
// read whose stream the server reset with PROTOCOL_ERROR, on a new
// connection each time, until the context ends, and the API may count each
// against the quota. One resend goes ahead, if the caller has a place in
// the quota for it (WithResend): the transport's retries after a refused
// stream, a graceful shutdown (GOAWAY) or a keep-alive connection the
// server closed are mostly of requests the server did not act on, but a
// server that read the request and closed the connection without an
// answer may have counted it. Attempts that took a connection and wrote
// nothing do not count.
//
// unconnected, asked once the request ended, says whether the transport
// looked for a connection for it and got none: nothing was sent. Go's
// transport reports both in the request's goroutine, before it hands the
// request to a connection; one that reports neither (not Go's) is taken
// to have sent it.
func sendTwice(ctx context.Context) (_ context.Context, _ context.CancelCauseFunc, unconnected func() bool) {
	take, _ := ctx.Value(resendKey{}).(func() bool)
	ctx, cancel := context.WithCancelCause(ctx)
	var wrote atomic.Int32
	var placed atomic.Bool // the resend's place is taken
	var looked, got atomic.Bool
	unconnected = func() bool { return looked.Load() && !got.Load() }
	return httptrace.WithClientTrace(ctx, &httptrace.ClientTrace{
		WroteHeaders: func() { wrote.Add(1) },
		GetConn:      func(string) { looked.Store(true) },
		GotConn: func(httptrace.GotConnInfo) {
			got.Store(true)
			switch n := wrote.Load(); {
			case n >= 2:
				cancel(errSentAgain)
			case n == 1 && take != nil && !placed.Load():
				if !take() {
					cancel(errNoPlaceToSendAgain)
					return
				}
				placed.Store(true)
			}
		},
	}), cancel, unconnected
}

// errNoConnection is a transport error that came before the request had
// a connection: it was not sent.
type errNoConnection struct{ error }

func (e errNoConnection) Unwrap() error { return e.error }

// redactURL strips the URL from a *url.Error: it holds nothing secret, but
// the query makes log lines long and the caller already says what it did.
func redactURL(err error) error {
	if ue := (*url.Error)(nil); errors.As(err, &ue) {
		return ue.Err
	}
	return err
}

// Action is the part of a Machine Action the worker reads. The whole action
// is kept in Raw, compacted, and published as it is.
type Action struct {
	ID                  string `json:"id"`
	Type                string `json:"type"`
	Status              string `json:"status"`
	MachineID           string `json:"machineId"`
	ComputerDNSName     string `json:"computerDnsName"`
	RequestorComment    string `json:"requestorComment"`
	CreationDateTimeUTC string `json:"creationDateTimeUtc"`
	// The last update's time, under its documented name and the one list
	// examples show.
	LastUpdateDateTimeUTC string `json:"lastUpdateDateTimeUtc"`
	LastUpdateTimeUTC     string `json:"lastUpdateTimeUtc"`
	Raw                   json.RawMessage
}

// Updated is the action's last update time, or zero if the API gave none
// that reads as a time.
func (a Action) Updated() time.Time {
	for _, s := range []string{a.LastUpdateDateTimeUTC, a.LastUpdateTimeUTC} {
		if t, ok := parseAPITime(s); ok {
			return t
		}
	}
	return time.Time{}
}

// Created is the action's creation time, or zero if the API gave none that
// reads as a time (it is not always written with a zone).
func (a Action) Created() time.Time {
	t, _ := parseAPITime(a.CreationDateTimeUTC)
	return t
}

// parseAPITime reads a time as the API writes it: RFC 3339, or without a
// zone (then UTC).
func parseAPITime(s string) (time.Time, bool) {
	for _, layout := range []string{time.RFC3339Nano, "2006-01-02T15:04:05.999999999"} {
		if t, err := time.Parse(layout, s); err == nil {
			// In UTC it must stay within the years RFC 3339 writes, as
			// the result's policy.lastSeen carries it.
			if t = t.UTC(); t.Year() < 1 || t.Year() > 9999 {
				return time.Time{}, false
			}
			return t, true
		}
	}
	return time.Time{}, false
}

// OffboardOf says whether the action may be an Offboard action of the
// device: a type or a machineId it gives (either may be null or missing,
// MDE-API.md) is Offboard and the device's. An answer or a list that
// gives another device's action, or another type's, is not read as the
// device's offboard.
func (a Action) OffboardOf(machineID string) bool {
	return (a.Type == "" || strings.EqualFold(a.Type, "Offboard")) && (a.MachineID == "" || strings.EqualFold(a.MachineID, machineID))
}

// Unfinished reports whether the action is pending or in progress. The
// status is read in any case, as every status is: "pending" is Pending.
func (a Action) Unfinished() bool {
	switch StatusSpelled(a.Status) {
	case "Pending", "InProgress":
		return true
	}
	return false
}

// Finished reports whether the action's status is final: Succeeded,
// Failed, TimeOut or Cancelled, in any case. Any other, or none (the API
// may answer any member null), may still change.
func (a Action) Finished() bool {
	switch StatusSpelled(a.Status) {
	case "Succeeded", "Failed", "TimeOut", "Cancelled":
		return true
	}
	return false
}

// actionStatuses are a Machine Action's documented statuses.
var actionStatuses = [...]string{"Pending", "InProgress", "Succeeded", "Failed", "TimeOut", "Cancelled"}

// StatusSpelled is status spelled as documented when it is a documented
// status in another case of its ASCII letters ("pending": "Pending");
// any other as it is (a long s is no s). Statuses compared or published
// so agree however the API wrote them. Spaces, tabs and line ends around
// it are dropped first ("Succeeded\n" is Succeeded): an action event's
// message id carries its status, and the NATS client sends a header
// value without them, so a status kept with them had the id of the
// status without, and the stream dropped the later event of that status
// (the final one) as a repeat.
func StatusSpelled(status string) string {
	status = strings.Trim(status, " \t\r\n")
	for _, s := range actionStatuses {
		if equalFoldASCII(status, s) {
			return s
		}
	}
	return status
}

// unmarshalObject is json.Unmarshal of an answer that must be a JSON
// object into v, whose error, when the answer is JSON of another kind (a
// proxy's or a cache's [] or "text"), says what it is: encoding/json's
// names the Go type it was read into ("struct { Value *[]mde.Machine
// ... }"), and went as it was into the request's result.
func unmarshalObject(body []byte, v any) error {
	err := json.Unmarshal(body, v)
	if err == nil {
		return nil
	}
	var kind string
	t, _ := json.NewDecoder(bytes.NewReader(body)).Token()
	switch t.(type) {
	case json.Delim:
		if t == json.Delim('[') {
			kind = "a JSON array"
		}
	case string:
		kind = "a JSON string"
	case float64:
		kind = "a JSON number"
	case bool:
		kind = "a JSON boolean"
	}
	if kind == "" { // not JSON, or an object or null: encoding/json's error says it
		return err
	}
	return fmt.Errorf("the answer is %s, not an object", kind)
}

// ParseAction reads one Machine Action.
func ParseAction(body []byte) (Action, error) {
	var a Action
	if err := unmarshalObject(body, &a); err != nil {
		return Action{}, fmt.Errorf("read machine action: %w", err)
	}
	if a.ID == "" {
		return Action{}, fmt.Errorf("read machine action: no id")
	}
	// Compacted: the result carries it as it is (offboard.MarshalWith),
	// on one line whatever white space the API put in.
	var raw bytes.Buffer
	raw.Grow(len(body))
	if err := json.Compact(&raw, body); err != nil {
		return Action{}, fmt.Errorf("read machine action: %w", err)
	}
	a.Raw = raw.Bytes()
	if !utf8.Valid(a.Raw) {
		// JSON text is UTF-8 (RFC 8259), and results carry the action as
		// it is: bytes that are not UTF-8 (inside strings, the only place
		// a JSON reader lets them through) become U+FFFD, one for each
		// run of them (encoding/json reads one for each byte), so that a
		// strict reader of the results can read the result.
		a.Raw = bytes.ToValidUTF8(a.Raw, []byte("\uFFFD"))
	}
	if d := depth(a.Raw); d > maxActionDepth {
		return Action{}, fmt.Errorf("read machine action: nested %d deep, more than %d", d, maxActionDepth)
	}
	return a, nil
}

// maxActionDepth bounds how deeply an action may nest its arrays and
// objects. A Machine Action nests three levels; results and ledger
// entries carry it one and two levels deeper, and Go's decoder refuses
// text nested past 10,000: an action nested to that limit would leave a
// ledger entry nobody can read.
const maxActionDepth = 64

// depth is how deeply JSON text nests its arrays and objects.
func depth(text []byte) int {
	d, most := 0, 0
	inString, escaped := false, false
	for _, c := range text {
		switch {
		case escaped:
			escaped = false
		case inString:
			switch c {
			case '\\':
				escaped = true
			case '"':
				inString = false
			}
		case c == '"':
			inString = true
		case c == '{' || c == '[':
			d++
			most = max(most, d)
		case c == '}' || c == ']':
			d--
		}
	}
	return most
}

// actionFields are the documented members of a Machine Action that hold a
// single value, in the documentation's order: what CutAction keeps.
// relatedFileInfo, commands and troubleshootInfo hold structures of any
// size and are left out.
var actionFields = []string{
	"@odata.context", "id", "type", "title", "requestor", "requestorComment", "status",
	"machineId", "computerDnsName", "creationDateTimeUtc", "lastUpdateDateTimeUtc", "lastUpdateTimeUtc",
	"cancellationRequestor", "cancellationComment", "cancellationDateTimeUtc", "errorHResult",
	"scope", "externalId", "requestSource",
}

// MaxCutMember is the largest value, encoded, that CutAction keeps of a
// member: a comment of 1000 characters fits.
const MaxCutMember = 4 << 10

// CutAction is a Machine Action (compacted JSON, as ParseAction keeps it)
// cut down to its documented members that hold a single value, each of at
// most MaxCutMember bytes: at most about 80 KiB, whatever the API put in
// it. It is for an action too large to carry whole in a result.
func CutAction(raw json.RawMessage) json.RawMessage {
	var all map[string]json.RawMessage
	if err := json.Unmarshal(raw, &all); err != nil {
		return json.RawMessage(`{}`)
	}
	out := []byte{'{'}
	for _, name := range actionFields {
		v, ok := all[name]
		if !ok || len(v) == 0 || len(v) > MaxCutMember || v[0] == '{' || v[0] == '[' {
			continue
		}
		if len(out) > 1 {
			out = append(out, ',')
		}
		key, _ := json.Marshal(name)
		out = append(append(append(out, key...), ':'), v...)
	}
	return append(out, '}')
}

// ParseActions reads a list answer {"value": [...]}. An answer that
// holds only part of the list (@odata.nextLink) is an error: the device's
// pending action, or the one an attempt whose answer was lost made, may
// be on a page not read, and an action read as absent could be made a
// second time.
func ParseActions(body []byte) ([]Action, error) {
	var list struct {
		Value *[]json.RawMessage `json:"value"`
		Next  string             `json:"@odata.nextLink"`
	}
	if err := unmarshalObject(body, &list); err != nil {
		return nil, fmt.Errorf("read machine actions: %w", err)
	}
	if list.Value == nil {
		return nil, errNoList("machine actions")
	}
	if list.Next != "" {
		return nil, errors.New("read machine actions: the answer holds part of the list (@odata.nextLink)")
	}
	out := make([]Action, 0, len(*list.Value))
	for _, raw := range *list.Value {
		a, err := ParseAction(raw)
		if err != nil {
			return nil, err
		}
		out = append(out, a)
	}
	return out, nil
}

// Machine is the part of a device record the worker reads: the guards
// match on its tags, device group and last-seen time.
type Machine struct {
	ID              string   `json:"id"`
	ComputerDNSName string   `json:"computerDnsName"`
	LastSeen        string   `json:"lastSeen"`
	HealthStatus    string   `json:"healthStatus"`
	OSPlatform      string   `json:"osPlatform"`
	MachineTags     []string `json:"machineTags"`
	RbacGroupName   string   `json:"rbacGroupName"`
	// RbacGroupID is a number in the API's answers; json.Number also
	// takes it written as a string, so an odd answer does not make the
	// whole record unreadable.
	RbacGroupID json.Number `json:"rbacGroupId"`
}

// errGroupID is a device record whose rbacGroupId is neither a number nor
// a string holding one.
var errGroupID = errors.New("rbacGroupId is not a number")

// UnmarshalJSON reads a device record as encoding/json does, except that
// an rbacGroupId that is no number, nor a string holding one, fails with
// errGroupID: encoding/json's error for a string that is no number
// quotes the string whole (with GOEXPERIMENT=jsonv2 too), and it is
// whatever the answer wrote there (a credential a gateway echoed,
// megabytes of text), which would go on into results and logs.
func (m *Machine) UnmarshalJSON(data []byte) error {
	type machine Machine // without this method
	var rec struct {
		machine
		RbacGroupID json.RawMessage `json:"rbacGroupId"` // read below, hiding machine's
	}
	if err := json.Unmarshal(data, &rec); err != nil {
		return err
	}
	*m = Machine(rec.machine)
	if rec.RbacGroupID != nil && json.Unmarshal(rec.RbacGroupID, &m.RbacGroupID) != nil {
		return errGroupID
	}
	return nil
}

// EarliestSighting is the earliest lastSeen taken for a sighting: an
// earlier one (.NET's 0001-01-01, Unix's 1970-01-01) is a placeholder for
// a device never seen, not a device inactive for decades. Defender for
// Endpoint came out in 2016.
var EarliestSighting = time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC)

// LastSeenTime is the device's lastSeen as a time; false when the API gave
// none that reads as one (it is not always written with a zone).
func (m Machine) LastSeenTime() (time.Time, bool) {
	return parseAPITime(m.LastSeen)
}

// ParseMachine reads one device record.
func ParseMachine(body []byte) (Machine, error) {
	var m Machine
	if err := unmarshalObject(body, &m); err != nil {
		return Machine{}, fmt.Errorf("read machine: %w", err)
	}
	if m.ID == "" {
		return Machine{}, errors.New("read machine: no id")
	}
	return m, nil
}

// ParseMachines reads a list answer {"value": [...]}.
func ParseMachines(body []byte) ([]Machine, error) {
	machines, _, err := ParseMachineList(body)
	return machines, err
}

// ParseMachineList reads a list answer, and whether it says that more of
// the list follows (@odata.nextLink): it then holds only part of what was
// asked for.
func ParseMachineList(body []byte) (machines []Machine, more bool, err error) {
	var list struct {
		Value *[]Machine `json:"value"`
		Next  string     `json:"@odata.nextLink"`
	}
	if err := unmarshalObject(body, &list); err != nil {
		return nil, false, fmt.Errorf("read machines: %w", err)
	}
	if list.Value == nil {
		return nil, false, errNoList("machines")
	}
	return *list.Value, list.Next != "", nil
}

// errNoList is a list answer without its "value" list ({} or "value":
// null): not the API's form of an empty list ({"value": []}), so it is not
// read as one. An action read as absent could be made a second time.
func errNoList(what string) error {
	return fmt.Errorf("read %s: the answer has no \"value\" list", what)
}
