package mde

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/Azure/azure-sdk-for-go/sdk/azidentity"

	"github.com/contoso-secops/mde-offboard/internal/mde/mdesim"
)

// maxTokenErrorLen bounds a token error's text: a fixed message and codes.
const maxTokenErrorLen = 300

// checkTokenErrorText fails when err is not a *TokenError, when its text
// is too long, or when its text, wrapped or not, holds any of forbidden
// (reported by index, so the test log does not print a secret).
func checkTokenErrorText(t *testing.T, err error, forbidden ...string) *TokenError {
	t.Helper()
	var te *TokenError
	if !errors.As(err, &te) {
		t.Fatalf("error %T is not a *TokenError", err)
	}
	wrapped := fmt.Errorf("offboard %s: %w", testMachineID, err)
	texts := []string{err.Error(), wrapped.Error(), fmt.Sprintf("%v", wrapped), fmt.Sprintf("%+v", wrapped), fmt.Sprintf("%#v", wrapped)}
	for e := errors.Unwrap(err); e != nil; e = errors.Unwrap(e) {
		texts = append(texts, e.Error(), fmt.Sprintf("%+v", e))
	}
	for _, text := range texts {
		for i, s := range forbidden {
			if strings.Contains(text, s) {
				t.Errorf("error text (%d chars) holds forbidden string #%d", len(text), i+1)
			}
		}
	}
	if n := len(err.Error()); n > maxTokenErrorLen {
		t.Errorf("error text has %d characters, want at most %d", n, maxTokenErrorLen)
	}
	return te
}

// tokenParts are pieces of the simulator's fault token: none may appear.
var tokenParts = []string{
	mdesim.FaultAccessToken,
	mdesim.FaultAccessToken[len(mdesim.FaultAccessToken)-30:],
	"SECRET",
	"access_token",
	"3599",
}

func TestTokenErrorGarbledAnswer(t *testing.T) {
	t.Parallel()
	const secret = "right-secret-0101"
	f := setupLogin(t, secret, secret)
	f.sim.InjectLoginFault(simTenantID, mdesim.LoginGarbled, 100)
	_, err := f.getToken(f.newCredential(t))
	if err == nil {
		t.Fatal("GetToken with a garbled answer succeeded")
	}
	te := checkTokenErrorText(t, err, append(tokenParts, secret)...)
	if te.Final {
		t.Error("Final = true for an unreadable answer, want false: the next one may be readable")
	}
	if te.Status != 0 || te.AADSTS != "" || te.CorrelationID != "" {
		t.Errorf("Status, AADSTS, CorrelationID = %d, %q, %q; want none", te.Status, te.AADSTS, te.CorrelationID)
	}
	if !strings.Contains(err.Error(), "could not be read") {
		t.Errorf("error %q does not say the answer could not be read", err)
	}
}

func TestTokenErrorLongRefusal(t *testing.T) {
	t.Parallel()
	const secret = "right-secret-0102"
	f := setupLogin(t, secret, secret)
	f.sim.InjectLoginFault(simTenantID, mdesim.LoginRefusedLongBody, 100)
	_, err := f.getToken(f.newCredential(t))
	if err == nil {
		t.Fatal("GetToken with a refusal succeeded")
	}
	te := checkTokenErrorText(t, err, mdesim.FaultSecret, "Lorem ipsum", "invalid_client", "Trace ID", secret)
	if !te.Final {
		t.Error("Final = false for a 401, want true")
	}
	want := fmt.Sprintf("AADSTS%d", mdesim.FaultAADSTS)
	if te.Status != 401 || te.AADSTS != want || te.CorrelationID != mdesim.FaultCorrelationID {
		t.Errorf("Status, AADSTS, CorrelationID = %d, %q, %q; want 401, %q, %q", te.Status, te.AADSTS, te.CorrelationID, want, mdesim.FaultCorrelationID)
	}
	for _, s := range []string{want, mdesim.FaultCorrelationID, "401"} {
		if !strings.Contains(err.Error(), s) {
			t.Errorf("error %q does not hold %q", err, s)
		}
	}
}

func TestTokenErrorRefusedSecret(t *testing.T) {
	t.Parallel()
	const right, wrong = "right-secret-0103", "wrong-secret-0103"
	f := setupLogin(t, right, wrong)
	_, err := f.getToken(f.newCredential(t))
	if err == nil {
		t.Fatal("GetToken with a wrong secret succeeded")
	}
	te := checkTokenErrorText(t, err, right, wrong, "Invalid client secret", "Trace ID", "invalid_client")
	if te.AADSTS != "AADSTS7000215" || !guidPattern.MatchString(te.CorrelationID) {
		t.Errorf("AADSTS, CorrelationID = %q, %q; want AADSTS7000215 and a GUID", te.AADSTS, te.CorrelationID)
	}
	if !strings.Contains(err.Error(), "AADSTS7000215") || !strings.Contains(err.Error(), "correlation id "+te.CorrelationID) {
		t.Errorf("error %q does not hold the AADSTS code and the correlation id", err)
	}
}

func TestTokenErrorNoAnswer(t *testing.T) {
	t.Parallel()
	const secret = "right-secret-0104"
	f := setupLogin(t, secret, secret)
	cred := f.newCredential(t)
	f.sim.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancel()
	_, err := cred.GetToken(ctx, policy.TokenRequestOptions{Scopes: []string{f.cloud.Scope}})
	if err == nil {
		t.Fatal("GetToken with the login host down succeeded")
	}
	te := checkTokenErrorText(t, err, secret, "dial", "RESPONSE", "troubleshoot")
	// Refused at once, not tried again within the call: the caller's
	// retry repeats it.
	if te.Final || te.Status != 0 || ctx.Err() != nil {
		t.Errorf("Final, Status, call's time spent = %v, %d, %v; want false, 0, false", te.Final, te.Status, ctx.Err() != nil)
	}
	if !strings.Contains(err.Error(), "no answer from the login host") {
		t.Errorf("error %q does not say the login host did not answer", err)
	}
}

func TestTokenErrorUnreadableSecretFile(t *testing.T) {
	t.Parallel()
	const secret = "right-secret-0105"
	f := setupLogin(t, secret, secret)
	cred := f.newCredential(t)
	writeSecretFile(t, f.secretFile, "", time.Now().Add(time.Minute))
	_, err := f.getToken(cred)
	if err == nil {
		t.Fatal("GetToken with an empty secret file succeeded")
	}
	te := checkTokenErrorText(t, err, secret)
	if te.Final || te.File != f.secretFile {
		t.Errorf("Final, File = %v, %q; want false, the secret file", te.Final, te.File)
	}
	if !strings.Contains(err.Error(), f.secretFile) {
		t.Errorf("error %q does not name the file", err)
	}
}

// Answers the simulator does not give: only codes of the expected shape
// are kept, whatever the body holds.
func TestClassifyTokenErrorBodies(t *testing.T) {
	t.Parallel()
	const secret = "SECRET-in-the-body-0123456789"
	const guid = "4b5c6d7e-0000-4000-8000-123456789abc"
	tests := []struct {
		name        string
		status      int
		body        string
		final       bool
		aadsts, cid string
	}{
		{name: "correlation id that is no GUID", status: 400,
			body:  `{"error":"invalid_request","error_codes":[90002],"correlation_id":"` + secret + `","error_description":"AADSTS90002: ` + secret + `"}`,
			final: true, aadsts: "AADSTS90002"},
		{name: "codes only in the description", status: 401,
			body:  `{"error":"invalid_client","error_description":"AADSTS700027: ` + secret + `\r\nCorrelation ID: ` + guid + `"}`,
			final: true, aadsts: "AADSTS700027", cid: guid},
		{name: "not JSON", status: 400, body: "<html>" + secret + " AADSTS50011 Correlation ID: " + guid + "</html>",
			final: true, aadsts: "AADSTS50011", cid: guid},
		// Entra ID's transient failure is tried again whatever its
		// status (AADSTS90033).
		{name: "temporarily unavailable under 400", status: 400,
			body:   `{"error":"temporarily_unavailable","error_codes":[90033],"error_description":"AADSTS90033: A transient error has occurred. Please try again.\r\nCorrelation ID: ` + guid + `"}`,
			aadsts: "AADSTS90033", cid: guid},
		{name: "throttled", status: 429, body: `{"error":"temporarily_unavailable","correlation_id":"` + guid + `"}`, cid: guid},
		{name: "server error", status: 503, body: secret},
		{name: "empty body", status: 408},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			resp := &http.Response{StatusCode: tt.status, Status: http.StatusText(tt.status),
				Body: io.NopCloser(strings.NewReader(tt.body))}
			err := classifyTokenError(context.Background(), "login.example", false, &azidentity.AuthenticationFailedError{RawResponse: resp})
			te := checkTokenErrorText(t, err, secret, "<html>", "error_description", "temporarily_unavailable")
			if te.Final != tt.final || te.Status != tt.status || te.AADSTS != tt.aadsts || te.CorrelationID != tt.cid {
				t.Errorf("Final, Status, AADSTS, CorrelationID = %v, %d, %q, %q; want %v, %d, %q, %q",
					te.Final, te.Status, te.AADSTS, te.CorrelationID, tt.final, tt.status, tt.aadsts, tt.cid)
			}
		})
	}
}

// The zero failure (as the client makes for a request it cannot build)
// still has a fixed text.
func TestTokenErrorZeroValue(t *testing.T) {
	t.Parallel()
	const secret = "SECRET-cause-0123"
	err := &TokenError{Final: true, err: errors.New(secret)}
	checkTokenErrorText(t, err, secret)
	if err.Unwrap() != nil {
		t.Error("Unwrap() exposes the cause")
	}
}

// TestTokenErrorHugeAnswer: a login host that answers without end (a
// broken proxy, a hostile host) is read no further than a bound, as the
// API's answers are: the whole answer would be held in memory.
func TestTokenErrorHugeAnswer(t *testing.T) {
	t.Parallel()
	const secret = "right-secret-0101"
	f := setupLogin(t, secret, secret)
	read := &countingTransport{rt: f.hc.Transport}
	f.hc = &http.Client{Transport: read}
	f.sim.InjectLoginFault(simTenantID, mdesim.LoginHugeBody, 100)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	_, err := f.newCredential(t).GetToken(ctx, policy.TokenRequestOptions{Scopes: []string{f.cloud.Scope}})
	if err == nil {
		t.Fatal("GetToken with a huge answer succeeded")
	}
	checkTokenErrorText(t, err, secret)
	if n := read.n.Load(); n > 8<<20 {
		t.Errorf("read %d MiB of the login host's answers, want at most 8 MiB", n>>20)
	}
}

// countingTransport counts the bytes read from its answers' bodies.
type countingTransport struct {
	rt http.RoundTripper
	n  atomic.Int64
}

func (c *countingTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := c.rt.RoundTrip(req)
	if err == nil {
		resp.Body = &countingBody{ReadCloser: resp.Body, n: &c.n}
	}
	return resp, err
}

type countingBody struct {
	io.ReadCloser
	n *atomic.Int64
}

func (b *countingBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	b.n.Add(int64(n))
	return n, err
}

// TestTokenErrorBrokenToken: a token no HTTP request can carry (it holds
// a line break) is a token failure, not sent: sent, it failed each call
// in the transport, as a call whose outcome is unknown, for as long as
// the token was cached. The next call gets a new one.
func TestTokenErrorBrokenToken(t *testing.T) {
	t.Parallel()
	const secret = "right-secret-0105"
	f := setupLogin(t, secret, secret)
	f.sim.AddMachine(simTenantID, mdesim.Machine{ID: testMachineID})
	f.sim.InjectLoginFault(simTenantID, mdesim.LoginBrokenToken, 1)
	cred := f.newCredential(t)
	client := NewClient(Options{Cloud: f.cloud, Credential: cred, HTTPClient: f.hc})
	v := client.GetMachine(context.Background(), testMachineID)
	if v.Sent || v.Reason != ReasonToken {
		t.Errorf("call with a broken token: %v/%v (sent %v), want a token failure, not sent", v.Class, v.Reason, v.Sent)
	}
	for i, s := range []string{secret, "brokenAccessToken", "X-Injected"} {
		if strings.Contains(v.Error(), s) {
			t.Errorf("verdict text holds forbidden string #%d", i+1)
		}
	}
	if v := client.GetMachine(context.Background(), testMachineID); v.Class != Success {
		t.Errorf("the next call: %s, want success with a new token", v.Error())
	}
	if n := f.sim.TokenRequests(simTenantID); n != 2 {
		t.Errorf("token requests = %d, want 2", n)
	}
}
