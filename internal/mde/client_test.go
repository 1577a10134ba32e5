package mde

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"reflect"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/contoso-secops/mde-offboard/offboard"
)

const (
	testToken     = "eyJ0eXAiOiJKV1QiLCJhbGciOiJub25lIn0.test-token"
	testMachineID = "1e5bc9d7e413ddd7902c2932e418702b84d0cc07"
	testActionID  = "5382f7ea-7557-4ab7-9782-d50480024a4e"
)

// fakeCredential hands out a fixed token, or a fixed error, and counts the
// calls.
type fakeCredential struct {
	token string
	err   error

	calls  atomic.Int32
	mu     sync.Mutex
	scopes [][]string
}

func (f *fakeCredential) GetToken(_ context.Context, o policy.TokenRequestOptions) (azcore.AccessToken, error) {
	f.calls.Add(1)
	f.mu.Lock()
	f.scopes = append(f.scopes, append([]string(nil), o.Scopes...))
	f.mu.Unlock()
	if f.err != nil {
		return azcore.AccessToken{}, f.err
	}
	return azcore.AccessToken{Token: f.token, ExpiresOn: time.Now().Add(time.Hour)}, nil
}

// seenRequest is what the API server received.
type seenRequest struct {
	Method      string
	EscapedPath string
	RawQuery    string
	Header      http.Header
	Body        []byte
}

// apiFixture is a Client pointed at an httptest server, with its fakes.
type apiFixture struct {
	client *Client
	cred   *fakeCredential
	srv    *httptest.Server
	cloud  Cloud

	mu   sync.Mutex
	seen []seenRequest
}

func (f *apiFixture) requests() []seenRequest {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]seenRequest(nil), f.seen...)
}

// setupAPI starts a server answering with h, recording every request, and a
// client for it. opts may adjust the client's options.
func setupAPI(t *testing.T, h http.HandlerFunc, opts func(*Options)) *apiFixture {
	t.Helper()
	f := &apiFixture{cred: &fakeCredential{token: testToken}}
	f.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		f.mu.Lock()
		f.seen = append(f.seen, seenRequest{
			Method: r.Method, EscapedPath: r.URL.EscapedPath(), RawQuery: r.URL.RawQuery,
			Header: r.Header.Clone(), Body: body,
		})
		f.mu.Unlock()
		h(w, r)
	}))
	t.Cleanup(f.srv.Close)
	c, err := ResolveCloud("commercial", f.srv.URL, "", "")
	if err != nil {
		t.Fatalf("ResolveCloud(%q): %v", f.srv.URL, err)
	}
	f.cloud = c
	o := Options{Cloud: c, Credential: f.cred}
	if opts != nil {
		opts(&o)
	}
	f.client = NewClient(o)
	return f
}

func answerWith(status int, header http.Header, body string) http.HandlerFunc {
	return func(w http.ResponseWriter, _ *http.Request) {
		for k, v := range header {
			w.Header()[k] = v
		}
		w.WriteHeader(status)
		io.WriteString(w, body)
	}
}

const pendingAction = `{"@odata.context":"https://api.securitycenter.microsoft.com/api/$metadata#MachineActions/$entity","id":"` + testActionID + `","type":"Offboard","status":"Pending","machineId":null,"computerDnsName":null}`

func TestClientRequests(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		call func(context.Context, *Client) *Verdict

		method     string
		path       string // escaped
		filter     string // decoded $filter; "" for none
		body       string // exact; "" for none
		named      bool   // a lookup by name: its answer is read into Named
		rawQueryOK func(string) bool
	}{
		{
			name: "offboard",
			call: func(ctx context.Context, c *Client) *Verdict {
				return c.Offboard(ctx, testMachineID, "Retired in CMDB (CHG0012345)")
			},
			method: http.MethodPost,
			path:   "/api/machines/" + testMachineID + "/offboard",
			body:   `{"Comment":"Retired in CMDB (CHG0012345)"}`,
		},
		{
			name: "offboard comment with quotes and unicode",
			call: func(ctx context.Context, c *Client) *Verdict {
				return c.Offboard(ctx, testMachineID, `Retired "laptop-123" — naïve café ✓ \ <b>&`)
			},
			method: http.MethodPost,
			path:   "/api/machines/" + testMachineID + "/offboard",
			body:   `{"Comment":"Retired \"laptop-123\" — naïve café ✓ \\ \u003cb\u003e\u0026"}`,
		},
		{
			name:   "offboard empty comment still sends the field",
			call:   func(ctx context.Context, c *Client) *Verdict { return c.Offboard(ctx, testMachineID, "") },
			method: http.MethodPost,
			path:   "/api/machines/" + testMachineID + "/offboard",
			body:   `{"Comment":""}`,
		},
		{
			name:   "offboard id cannot change the path",
			call:   func(ctx context.Context, c *Client) *Verdict { return c.Offboard(ctx, "../x/y?z#w", "c") },
			method: http.MethodPost,
			path:   "/api/machines/..%2Fx%2Fy%3Fz%23w/offboard",
			body:   `{"Comment":"c"}`,
		},
		{
			name: "find machines by name doubles quotes",
			call: func(ctx context.Context, c *Client) *Verdict {
				return c.FindMachinesByName(ctx, "o'brien.contoso.local")
			},
			named:  true,
			method: http.MethodGet,
			path:   "/api/machines",
			filter: "computerDnsName eq 'o''brien.contoso.local'",
			rawQueryOK: func(q string) bool {
				return !strings.Contains(q, "+") && strings.Contains(q, "%20eq%20")
			},
		},
		{
			name: "find machines by name keeps a plus apart from spaces",
			call: func(ctx context.Context, c *Client) *Verdict {
				return c.FindMachinesByName(ctx, "my host+1.contoso.local")
			},
			named:  true,
			method: http.MethodGet,
			path:   "/api/machines",
			filter: "computerDnsName eq 'my host+1.contoso.local'",
			rawQueryOK: func(q string) bool {
				return !strings.Contains(q, "+") && strings.Contains(q, "my%20host%2B1")
			},
		},
		{
			name:   "offboard actions of a device",
			call:   func(ctx context.Context, c *Client) *Verdict { return c.OffboardActions(ctx, testMachineID) },
			method: http.MethodGet,
			path:   "/api/machineactions",
			filter: "machineId eq '" + testMachineID + "' and type eq 'Offboard'",
			rawQueryOK: func(q string) bool {
				return !strings.Contains(q, "+") && strings.Contains(q, "%20and%20type%20eq%20")
			},
		},
		{
			name:   "get machine",
			call:   func(ctx context.Context, c *Client) *Verdict { return c.GetMachine(ctx, testMachineID) },
			method: http.MethodGet,
			path:   "/api/machines/" + testMachineID,
		},
		{
			name:   "get machine id cannot change the path",
			call:   func(ctx context.Context, c *Client) *Verdict { return c.GetMachine(ctx, "x/offboard") },
			method: http.MethodGet,
			path:   "/api/machines/x%2Foffboard",
		},
		{
			name:   "get action",
			call:   func(ctx context.Context, c *Client) *Verdict { return c.GetAction(ctx, testActionID) },
			method: http.MethodGet,
			path:   "/api/machineactions/" + testActionID,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			f := setupAPI(t, answerWith(http.StatusCreated, http.Header{"Content-Type": {"application/json"}}, pendingAction), nil)
			a := tt.call(context.Background(), f.client)
			if a.Status == 0 {
				t.Fatalf("call: %v", a.Error())
			}
			if tt.named {
				// The lookup keeps the devices of the name, not the body.
				if a.Class != Success || a.Status != http.StatusCreated || a.Body != nil || a.Named == nil {
					t.Errorf("answer = %d %v %q %+v, want 201 success with what it found", a.Status, a.Class, a.Body, a.Named)
				}
			} else if a.Class != Success || a.Status != http.StatusCreated || string(a.Body) != pendingAction {
				t.Errorf("answer = %d %v %q, want 201 success with the server's body", a.Status, a.Class, a.Body)
			}

			reqs := f.requests()
			if len(reqs) != 1 {
				t.Fatalf("server got %d requests, want 1", len(reqs))
			}
			r := reqs[0]
			if r.Method != tt.method {
				t.Errorf("method = %s, want %s", r.Method, tt.method)
			}
			if r.EscapedPath != tt.path {
				t.Errorf("path = %s, want %s", r.EscapedPath, tt.path)
			}
			if got, want := r.Header.Get("Authorization"), "Bearer "+testToken; got != want {
				t.Errorf("Authorization header is not %q", "Bearer <the credential's token>")
			}
			if got := r.Header.Get("Accept"); got != "application/json" {
				t.Errorf("Accept = %q, want application/json", got)
			}

			if tt.body != "" {
				if got := r.Header.Get("Content-Type"); got != "application/json" {
					t.Errorf("Content-Type = %q, want application/json", got)
				}
				if string(r.Body) != tt.body {
					t.Errorf("body = %s, want %s", r.Body, tt.body)
				}
				// The comment round-trips and "Comment" is the only key.
				var m map[string]string
				if err := json.Unmarshal(r.Body, &m); err != nil || len(m) != 1 {
					t.Errorf("body %s: want a one-key JSON object (err %v)", r.Body, err)
				}
				var want map[string]string
				json.Unmarshal([]byte(tt.body), &want)
				if m["Comment"] != want["Comment"] {
					t.Errorf("Comment = %q, want %q", m["Comment"], want["Comment"])
				}
			} else {
				if len(r.Body) != 0 {
					t.Errorf("body = %q, want none", r.Body)
				}
				if got := r.Header.Get("Content-Type"); got != "" {
					t.Errorf("Content-Type = %q on a request without body", got)
				}
			}

			q, err := parseQuery(r.RawQuery)
			if err != nil {
				t.Fatalf("query %q: %v", r.RawQuery, err)
			}
			if got := q["$filter"]; got != tt.filter {
				t.Errorf("$filter = %q, want %q (raw query %q)", got, tt.filter, r.RawQuery)
			}
			if tt.filter == "" && r.RawQuery != "" {
				t.Errorf("raw query = %q, want none", r.RawQuery)
			}
			if tt.rawQueryOK != nil && !tt.rawQueryOK(r.RawQuery) {
				t.Errorf("raw query = %q: spaces must be sent as %%20, a plus as %%2B", r.RawQuery)
			}

			if n := f.cred.calls.Load(); n != 1 {
				t.Errorf("credential called %d times, want 1", n)
			}
			f.cred.mu.Lock()
			scopes := f.cred.scopes
			f.cred.mu.Unlock()
			if len(scopes) != 1 || len(scopes[0]) != 1 || scopes[0][0] != f.cloud.Scope {
				t.Errorf("token scopes = %v, want [[%s]]", scopes, f.cloud.Scope)
			}
		})
	}
}

// parseQuery decodes a raw query the strict way: '+' stays a plus, as the
// API's OData parser may read it (undocumented), so the client's spaces
// must be %20.
func parseQuery(raw string) (map[string]string, error) {
	m := map[string]string{}
	if raw == "" {
		return m, nil
	}
	for _, kv := range strings.Split(raw, "&") {
		k, v, _ := strings.Cut(kv, "=")
		dk, err := url.PathUnescape(k)
		if err != nil {
			return nil, err
		}
		dv, err := url.PathUnescape(v)
		if err != nil {
			return nil, err
		}
		m[dk] = dv
	}
	return m, nil
}

// TestClientAnswers runs one call per status and body through the client,
// to check that what the server says reaches Classify unchanged.
func TestClientAnswers(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name       string
		status     int
		header     http.Header
		body       string
		class      Class
		code       string
		apiCode    string
		retryAfter time.Duration
	}{
		{name: "201 action", status: 201, body: pendingAction, class: Success},
		{name: "200 action", status: 200, body: pendingAction, class: Success},
		{name: "400 ActiveRequestAlreadyExists", status: 400, body: `{"error":{"code":"ActiveRequestAlreadyExists","message":"Action is already in progress.","target":"c1"}}`, class: AlreadyPending, apiCode: "ActiveRequestAlreadyExists"},
		{name: "400 InvalidRequestBody", status: 400, body: `{"error":{"code":"InvalidRequestBody","message":"Request body is incorrect","target":"c2"}}`, class: Final, code: offboard.CodeAPIRejected, apiCode: "InvalidRequestBody"},
		{name: "400 OsPlatformNotSupported", status: 400, body: `{"error":{"code":"OsPlatformNotSupported","message":"not supported","target":"c3"}}`, class: Final, code: offboard.CodeUnsupportedOS, apiCode: "OsPlatformNotSupported"},
		{name: "401 Unauthorized", status: 401, body: `{"error":{"code":"Unauthorized","message":"Unauthorized","target":"c4"}}`, class: Final, code: offboard.CodeUnauthorized, apiCode: "Unauthorized"},
		{name: "403 Forbidden", status: 403, body: `{"error":{"code":"Forbidden","message":"Missing application roles. API required roles: Machine.Offboard","target":"c5"}}`, class: Final, code: offboard.CodeForbidden, apiCode: "Forbidden"},
		{name: "404 ResourceNotFound", status: 404, body: `{"error":{"code":"ResourceNotFound","message":"Machine was not found","target":"c6"}}`, class: NotFound, code: offboard.CodeMachineNotFound, apiCode: "ResourceNotFound"},
		{name: "429 quota", status: 429, header: http.Header{"Retry-After": {"7"}}, body: `{"error":{"code":"429","message":"API calls quota exceeded! maximum allowed 1500 per 01:00:00"}}`, class: Throttled, apiCode: "429", retryAfter: 7 * time.Second},
		{name: "500 InternalServerError", status: 500, body: `{"error":{"code":"InternalServerError","message":"An error occurred","target":"c7"}}`, class: Retry, apiCode: "InternalServerError"},
		{name: "502 HTML", status: 502, header: http.Header{"Content-Type": {"text/html"}}, body: "<html><body><h1>502 Bad Gateway</h1></body></html>", class: Retry},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			f := setupAPI(t, answerWith(tt.status, tt.header, tt.body), nil)
			a := f.client.Offboard(context.Background(), testMachineID, "c")
			if a.Status == 0 {
				t.Fatalf("Offboard: %v", a.Error())
			}
			if a.Status != tt.status || a.Class != tt.class || a.FailureCode != tt.code || a.APICode() != tt.apiCode || a.RetryAfter != tt.retryAfter {
				t.Errorf("answer = {%d %v %q %q %v}, want {%d %v %q %q %v}",
					a.Status, a.Class, a.FailureCode, a.APICode(), a.RetryAfter,
					tt.status, tt.class, tt.code, tt.apiCode, tt.retryAfter)
			}
			if want := tt.body; a.Class != Success && a.Body != nil || a.Class == Success && string(a.Body) != want {
				t.Errorf("Body = %q, want %q for a success, none for an error", a.Body, want)
			}
		})
	}
}

// The List machines API answers 404 Not Found when no device matches
// ("If there are no recent machines, you see 404 Not Found"): a name no
// device has, a filter nothing passes, the page after a full last one. A
// list call reads that as the empty list; a single device's or action's
// 404 stays not found, and a list of actions has no such answer.
func TestClientMachineListNotFound(t *testing.T) {
	t.Parallel()
	const notFound = `{"error":{"code":"NotFound","message":"No machines found","target":"c8"}}`
	lists := map[string]func(*Client) *Verdict{
		"FindMachinesByName": func(c *Client) *Verdict {
			return c.FindMachinesByName(context.Background(), "retired.contoso.local")
		},
		"ListMachines": func(c *Client) *Verdict {
			return c.ListMachines(context.Background(), "lastSeen lt 2024-01-01T00:00:00Z", MaxPage, 2*MaxPage)
		},
	}
	for name, call := range lists {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			f := setupAPI(t, answerWith(404, nil, notFound), nil)
			v := call(f.client)
			if v.Status != 404 || v.Class != Success || v.FailureCode != "" || !v.Sent {
				t.Fatalf("verdict = {%d %v %q sent %v}, want {404 success \"\" sent true}", v.Status, v.Class, v.FailureCode, v.Sent)
			}
			if v.Named != nil {
				if v.Named.Err != nil || v.Named.Count != 0 || v.Named.More {
					t.Errorf("found %+v; want no device", v.Named)
				}
			} else if m, err := ParseMachines(v.Body); err != nil || len(m) != 0 {
				t.Errorf("ParseMachines(%q) = %+v, %v; want no device", v.Body, m, err)
			}
		})
	}
	// A list of actions filtered on the device: its 404 says nothing of
	// the device, so it is not machine_not_found.
	others := map[string]struct {
		call  func(*Client) *Verdict
		class Class
		code  string
	}{
		"GetMachine":      {func(c *Client) *Verdict { return c.GetMachine(context.Background(), testMachineID) }, NotFound, offboard.CodeMachineNotFound},
		"GetAction":       {func(c *Client) *Verdict { return c.GetAction(context.Background(), testActionID) }, NotFound, offboard.CodeMachineNotFound},
		"OffboardActions": {func(c *Client) *Verdict { return c.OffboardActions(context.Background(), testMachineID) }, Final, offboard.CodeAPIRejected},
		"Offboard":        {func(c *Client) *Verdict { return c.Offboard(context.Background(), testMachineID, "c") }, NotFound, offboard.CodeMachineNotFound},
	}
	for name, o := range others {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			f := setupAPI(t, answerWith(404, nil, notFound), nil)
			if v := o.call(f.client); v.Status != 404 || v.Class != o.class || v.FailureCode != o.code || v.Body != nil {
				t.Errorf("verdict = {%d %v %q body %q}, want {404 %v %q no body}", v.Status, v.Class, v.FailureCode, v.Body, o.class, o.code)
			}
		})
	}
}

// A read answered as a duplicate offboard is (400 ActiveRequestAlreadyExists,
// or "Action is already in progress") was refused: only an offboard can
// find an action already pending, and the read's failure needs a code.
func TestClientReadAnsweredAsADuplicate(t *testing.T) {
	t.Parallel()
	reads := map[string]func(*Client) *Verdict{
		"GetMachine":         func(c *Client) *Verdict { return c.GetMachine(context.Background(), testMachineID) },
		"FindMachinesByName": func(c *Client) *Verdict { return c.FindMachinesByName(context.Background(), "pc.contoso.local") },
		"ListMachines":       func(c *Client) *Verdict { return c.ListMachines(context.Background(), "", 10, 0) },
		"OffboardActions":    func(c *Client) *Verdict { return c.OffboardActions(context.Background(), testMachineID) },
		"GetAction":          func(c *Client) *Verdict { return c.GetAction(context.Background(), testActionID) },
	}
	for _, body := range []string{
		`{"error":{"code":"ActiveRequestAlreadyExists","message":"Action is already in progress."}}`,
		`{"error":{"code":"BadRequest","message":"Action is already in progress."}}`,
	} {
		for name, read := range reads {
			t.Run(name, func(t *testing.T) {
				t.Parallel()
				f := setupAPI(t, answerWith(400, nil, body), nil)
				if v := read(f.client); v.Class != Final || v.Reason != ReasonRejected || v.FailureCode != offboard.CodeAPIRejected {
					t.Errorf("verdict = {%v %v %q}, want {final rejected %q}", v.Class, v.Reason, v.FailureCode, offboard.CodeAPIRejected)
				}
			})
		}
		t.Run("Offboard", func(t *testing.T) {
			t.Parallel()
			f := setupAPI(t, answerWith(400, nil, body), nil)
			if v := f.client.Offboard(context.Background(), testMachineID, "c"); v.Class != AlreadyPending {
				t.Errorf("offboard verdict = %v, want already_pending", v.Class)
			}
		})
	}
}

// A redirect is never followed: it could carry the bearer token to another
// host. The 3xx itself is the answer, and it is final.
func TestClientDoesNotFollowRedirects(t *testing.T) {
	t.Parallel()
	for _, status := range []int{301, 302, 303, 307, 308} {
		t.Run(http.StatusText(status), func(t *testing.T) {
			t.Parallel()
			var elsewhere atomic.Int32
			other := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
				elsewhere.Add(1)
				w.WriteHeader(http.StatusCreated)
			}))
			t.Cleanup(other.Close)

			// The caller's client follows redirects; NewClient must not
			// change it, nor let it follow one.
			hc := &http.Client{}
			f := setupAPI(t, func(w http.ResponseWriter, r *http.Request) {
				http.Redirect(w, r, other.URL+r.URL.Path, status)
			}, func(o *Options) { o.HTTPClient = hc })
			if hc.CheckRedirect != nil {
				t.Errorf("NewClient changed the caller's http.Client")
			}

			a := f.client.Offboard(context.Background(), testMachineID, "c")
			if a.Status == 0 {
				t.Fatalf("Offboard: %v", a.Error())
			}
			if n := elsewhere.Load(); n != 0 {
				t.Errorf("the redirect target got %d requests, want 0", n)
			}
			if a.Status != status || a.Class != Final || a.FailureCode != offboard.CodeAPIRejected {
				t.Errorf("answer = %d %v %q, want %d final %q", a.Status, a.Class, a.FailureCode, status, offboard.CodeAPIRejected)
			}
			if n := len(f.requests()); n != 1 {
				t.Errorf("API server got %d requests, want 1", n)
			}
		})
	}
}

// TestClientAnswerQuotingTheToken: a gateway or an API that quotes the
// request's Authorization header in its answer, whole, in part or escaped,
// does not bring the token into the verdict's text (results, dead
// letters, logs) nor its body.
func TestClientAnswerQuotingTheToken(t *testing.T) {
	t.Parallel()
	escaped, _ := json.Marshal("Bearer " + testToken) // JSON may escape what it likes; the token's parts stay apart
	tokenParts := strings.Split(testToken, ".")
	quotes := map[string]string{
		"whole":      "Request denied for header Authorization: Bearer " + testToken,
		"cut short":  "Authorization: Bearer " + testToken[:30] + "…",
		"bare":       "token " + testToken + " is not valid",
		"escaped":    "header " + strings.ReplaceAll(string(escaped[1:len(escaped)-1]), ".", `\u002e`),
		"lower case": "authorization: bearer " + testToken,
	}
	for _, status := range []int{http.StatusBadRequest, http.StatusUnauthorized, http.StatusForbidden, http.StatusInternalServerError} {
		for name, quote := range quotes {
			t.Run(fmt.Sprintf("%d/%s", status, name), func(t *testing.T) {
				t.Parallel()
				body := `{"error":{"code":"Forbidden","message":"` + quote + `","target":"` + testToken + `"}}`
				f := setupAPI(t, answerWith(status, nil, body), nil)
				v := f.client.Offboard(context.Background(), testMachineID, "c")
				if v.Status != status || v.Err == nil {
					t.Fatalf("verdict = %d %+v, want %d with the API's error", v.Status, v.Err, status)
				}
				texts := []string{v.Error(), v.Err.Message, v.Err.Code, v.Err.Target, string(v.Body)}
				for i, text := range texts {
					if strings.Contains(text, testToken[:30]) || strings.Contains(text, tokenParts[len(tokenParts)-1]) {
						t.Errorf("text #%d holds the token: %q", i, text)
					}
				}
				if !strings.Contains(v.Error(), "[redacted]") {
					t.Errorf("Error() = %q, want the token marked [redacted]", v.Error())
				}
			})
		}
	}

	t.Run("success", func(t *testing.T) {
		t.Parallel()
		action := strings.Replace(pendingAction, `"type":"Offboard"`, `"type":"Offboard","requestorComment":"`+testToken+`"`, 1)
		f := setupAPI(t, answerWith(http.StatusCreated, nil, action), nil)
		v := f.client.Offboard(context.Background(), testMachineID, "c")
		if v.Class != Success {
			t.Fatalf("verdict = %v %s, want success", v.Class, v.Error())
		}
		if bytes.Contains(v.Body, []byte(testToken)) {
			t.Errorf("body holds the token: %s", v.Body)
		}
		if _, err := ParseAction(v.Body); err != nil {
			t.Errorf("ParseAction of the body with the token taken out: %v", err)
		}
	})

	t.Run("words that are no token", func(t *testing.T) {
		t.Parallel()
		const msg = "Bearer token missing or expired; Bearer authentication/authorization failed; see https://aka.ms/eyJ for help"
		f := setupAPI(t, answerWith(http.StatusUnauthorized, nil, `{"error":{"code":"Unauthorized","message":"`+msg+`"}}`), nil)
		v := f.client.Offboard(context.Background(), testMachineID, "c")
		if v.Err == nil || v.Err.Message != msg {
			t.Errorf("message = %+v, want %q as sent", v.Err, msg)
		}
	})
}

func TestClientBodyCap(t *testing.T) {
	t.Parallel()
	for _, size := range []int{0, 1, MaxBody - 1, MaxBody, MaxBody + 1, MaxBody + 64<<10} {
		// The answer read as it comes, and read into a buffer of the
		// length it states.
		for _, stated := range []bool{false, true} {
			t.Run(fmt.Sprintf("%d/length_stated=%t", size, stated), func(t *testing.T) {
				t.Parallel()
				body := bytes.Repeat([]byte("a"), size)
				f := setupAPI(t, func(w http.ResponseWriter, _ *http.Request) {
					if stated {
						w.Header().Set("Content-Length", strconv.Itoa(size))
					}
					w.WriteHeader(http.StatusOK)
					w.Write(body)
				}, nil)
				a := f.client.GetAction(context.Background(), testActionID)
				if a.Status == 0 {
					t.Fatalf("GetAction: %v", a.Error())
				}
				want := min(size, MaxBody)
				if len(a.Body) != want || !bytes.Equal(a.Body, body[:want]) {
					t.Errorf("len(Body) = %d, want the first %d bytes", len(a.Body), want)
				}
			})
		}
	}
}

func TestClientTransportErrors(t *testing.T) {
	t.Parallel()
	// hang answers nothing until the client gives up or the test ends.
	hang := func(arrived chan<- struct{}, release <-chan struct{}) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) {
			close(arrived)
			select {
			case <-r.Context().Done():
			case <-release:
			}
		}
	}
	tests := []struct {
		name            string
		handler         func(arrived chan<- struct{}, release <-chan struct{}) http.HandlerFunc
		timeout         time.Duration
		cancelOnArrival bool // the caller cancels once the server has the request
		closed          bool // the server is closed before the call
		wantReason      Reason
	}{
		{
			name:       "no answer within the timeout",
			handler:    hang,
			timeout:    100 * time.Millisecond,
			wantReason: ReasonTimeout,
		},
		{
			name: "body stalls past the timeout",
			handler: func(arrived chan<- struct{}, release <-chan struct{}) http.HandlerFunc {
				return func(w http.ResponseWriter, r *http.Request) {
					close(arrived)
					w.WriteHeader(http.StatusCreated)
					io.WriteString(w, `{"id":`)
					w.(http.Flusher).Flush()
					select {
					case <-r.Context().Done():
					case <-release:
					}
				}
			},
			timeout:    100 * time.Millisecond,
			wantReason: ReasonTimeout,
		},
		{
			name:            "caller cancels",
			handler:         hang,
			timeout:         time.Hour,
			cancelOnArrival: true,
			wantReason:      ReasonCancelled,
		},
		{
			name: "connection refused",
			handler: func(chan<- struct{}, <-chan struct{}) http.HandlerFunc {
				return answerWith(201, nil, pendingAction)
			},
			timeout:    100 * time.Millisecond,
			closed:     true,
			wantReason: ReasonNetwork,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			arrived, release := make(chan struct{}), make(chan struct{})
			f := setupAPI(t, tt.handler(arrived, release), func(o *Options) { o.Timeout = tt.timeout })
			// Cleanups run last-in first-out: release the handler before
			// the server's Close waits for it.
			t.Cleanup(func() { close(release) })
			if tt.closed {
				f.srv.Close()
			}
			// The outer deadline only keeps a regression from hanging the
			// test; the client's own Timeout must end the call first.
			outer, cancelOuter := context.WithTimeout(context.Background(), time.Minute)
			defer cancelOuter()
			ctx, cancel := context.WithCancel(outer)
			defer cancel()
			if tt.cancelOnArrival {
				go func() {
					select {
					case <-arrived:
						cancel()
					case <-release:
					}
				}()
			}

			v := f.client.Offboard(ctx, testMachineID, "c")
			if outer.Err() != nil {
				t.Fatalf("the call ended only with the test's own deadline: %v", v.Error())
			}
			if v.Status != 0 || v.Class != Retry || v.Reason != tt.wantReason || v.Sent != !tt.closed {
				t.Errorf("verdict = {status %d, %v, %v, sent %v}, want {0, retry, %v, sent %v}", v.Status, v.Class, v.Reason, v.Sent, tt.wantReason, !tt.closed)
			}
			if strings.Contains(v.Error(), testToken) {
				t.Errorf("message holds the token")
			}
		})
	}
}

// No token, no request.
func TestClientTokenError(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name  string
		err   error
		final bool
	}{
		{name: "refused credentials", err: &TokenError{Final: true, err: errors.New("AADSTS7000215: Invalid client secret provided")}, final: true},
		{name: "login host unreachable", err: &TokenError{err: errors.New("dial tcp: connection refused")}},
	}
	calls := map[string]func(*Client) *Verdict{
		"Offboard": func(c *Client) *Verdict { return c.Offboard(context.Background(), testMachineID, "c") },
		"FindMachinesByName": func(c *Client) *Verdict {
			return c.FindMachinesByName(context.Background(), "pc.contoso.local")
		},
		"OffboardActions": func(c *Client) *Verdict { return c.OffboardActions(context.Background(), testMachineID) },
		"GetAction":       func(c *Client) *Verdict { return c.GetAction(context.Background(), testActionID) },
	}
	for _, tt := range tests {
		for name, call := range calls {
			t.Run(tt.name+"/"+name, func(t *testing.T) {
				t.Parallel()
				f := setupAPI(t, answerWith(201, nil, pendingAction), nil)
				f.cred.err = tt.err
				v := call(f.client)
				wantClass, wantReason := Retry, ReasonToken
				if tt.final {
					wantClass, wantReason = Final, ReasonCredentialsRejected
				}
				if v.Status != 0 || v.Sent || v.Class != wantClass || v.Reason != wantReason {
					t.Errorf("verdict = {status %d, sent %v, %v, %v}, want {0, false, %v, %v}", v.Status, v.Sent, v.Class, v.Reason, wantClass, wantReason)
				}
				if n := len(f.requests()); n != 0 {
					t.Errorf("server got %d requests, want 0", n)
				}
			})
		}
	}
}

func TestNewClientOptions(t *testing.T) {
	t.Parallel()

	t.Run("default timeout", func(t *testing.T) {
		t.Parallel()
		c := NewClient(Options{Cloud: Clouds["commercial"], Credential: &fakeCredential{token: testToken}})
		if c.timeout != 30*time.Second {
			t.Errorf("timeout = %v, want 30s", c.timeout)
		}
		if c.base != "https://api.securitycenter.microsoft.com" || c.scope != "https://api.securitycenter.microsoft.com/.default" {
			t.Errorf("base, scope = %q, %q", c.base, c.scope)
		}
	})

	t.Run("the caller's transport is used", func(t *testing.T) {
		t.Parallel()
		var trips atomic.Int32
		rt := roundTripFunc(func(r *http.Request) (*http.Response, error) {
			trips.Add(1)
			return http.DefaultTransport.RoundTrip(r)
		})
		f := setupAPI(t, answerWith(201, nil, pendingAction), func(o *Options) {
			o.HTTPClient = &http.Client{Transport: rt}
		})
		if a := f.client.Offboard(context.Background(), testMachineID, "c"); a.Status == 0 {
			t.Fatalf("Offboard: %v", a.Error())
		}
		if n := trips.Load(); n != 1 {
			t.Errorf("transport used %d times, want 1", n)
		}
	})

	t.Run("base URL with a path", func(t *testing.T) {
		t.Parallel()
		f := setupAPI(t, answerWith(201, nil, pendingAction), nil)
		c, err := ResolveCloud("commercial", f.srv.URL+"/proxy/mde/", "", "")
		if err != nil {
			t.Fatalf("ResolveCloud: %v", err)
		}
		client := NewClient(Options{Cloud: c, Credential: f.cred})
		if a := client.Offboard(context.Background(), testMachineID, "c"); a.Status == 0 {
			t.Fatalf("Offboard: %v", a.Error())
		}
		reqs := f.requests()
		if len(reqs) != 1 || reqs[0].EscapedPath != "/proxy/mde/api/machines/"+testMachineID+"/offboard" {
			t.Errorf("requests = %+v, want one to /proxy/mde/api/machines/<id>/offboard", reqs)
		}
	})
}

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

// realAction is a Machine Action as the API answers a fresh offboard:
// every documented field, machineId and computerDnsName null, and the
// creation time with seven fractional digits. The layout (spaces, field
// order) must survive in Raw.
const realAction = `{
    "@odata.context": "https://api.securitycenter.microsoft.com/api/$metadata#MachineActions/$entity",
    "id": "5382f7ea-7557-4ab7-9782-d50480024a4e",
    "type": "Offboard",
    "title": null,
    "requestor": "3f0c2a1e-7777-8888-9999-000000000000",
    "requestorComment": "Retired in CMDB (CHG0012345) \u00e9",
    "status": "Pending",
    "machineId": null,
    "computerDnsName": null,
    "creationDateTimeUtc": "2024-11-24T10:00:01.1234567Z",
    "lastUpdateDateTimeUtc": "2024-11-24T10:00:01.1234567Z",
    "cancellationRequestor": null,
    "cancellationComment": null,
    "cancellationDateTimeUtc": null,
    "errorHResult": 0,
    "scope": null,
    "externalId": null,
    "requestSource": "PublicApi",
    "relatedFileInfo": null,
    "commands": [],
    "troubleshootInfo": null,
    "someFutureField": {"nested": [1, 2, 3]}
}`

func TestParseAction(t *testing.T) {
	t.Parallel()
	input := []byte(realAction)
	a, err := ParseAction(input)
	if err != nil {
		t.Fatalf("ParseAction: %v", err)
	}
	want := Action{ID: testActionID, Type: "Offboard", Status: "Pending", CreationDateTimeUTC: "2024-11-24T10:00:01.1234567Z"}
	if a.ID != want.ID || a.Type != want.Type || a.Status != want.Status || a.MachineID != "" || a.ComputerDNSName != "" || a.CreationDateTimeUTC != want.CreationDateTimeUTC {
		t.Errorf("ParseAction = %+v, want %+v", a, want)
	}
	if !a.Unfinished() {
		t.Errorf("a Pending action is not Unfinished")
	}
	var compact bytes.Buffer
	if err := json.Compact(&compact, []byte(realAction)); err != nil {
		t.Fatal(err)
	}
	if string(a.Raw) != compact.String() {
		t.Errorf("Raw = %s, want the input bytes without white space between tokens: %s", a.Raw, compact.Bytes())
	}
	// Raw is a copy: the caller may reuse its buffer.
	input[0] = 'X'
	if a.Raw[0] != '{' {
		t.Errorf("Raw shares the input's memory")
	}
	if got, want := a.Created(), time.Date(2024, 11, 24, 10, 0, 1, 123456700, time.UTC); !got.Equal(want) || got.Location() != time.UTC {
		t.Errorf("Created() = %v, want %v", got, want)
	}
}

// TestCutAction: an action cut down keeps its documented single-value
// members as the API gave them, and drops structures, members it does
// not know and values too large.
func TestCutAction(t *testing.T) {
	t.Parallel()
	big := strings.Repeat("x", MaxCutMember)
	a, err := ParseAction([]byte(strings.Replace(realAction, `"requestSource"`, `"title": "`+big+`", "requestSource"`, 1)))
	if err != nil {
		t.Fatal(err)
	}
	cut := CutAction(a.Raw)
	var got map[string]any
	if err := json.Unmarshal(cut, &got); err != nil {
		t.Fatalf("%s: %v", cut, err)
	}
	if got["id"] != testActionID || got["status"] != "Pending" || got["requestSource"] != "PublicApi" || got["machineId"] != nil {
		t.Errorf("cut action %s lacks a documented member", cut)
	}
	for _, name := range []string{"commands", "relatedFileInfo", "troubleshootInfo", "someFutureField", "title"} {
		if _, ok := got[name]; ok {
			t.Errorf("cut action %s keeps %s", cut, name)
		}
	}
	if !bytes.Contains(cut, []byte(`"machineId":null`)) {
		t.Errorf("cut action %s: a null member is kept as null", cut)
	}
	if b, err := ParseAction(cut); err != nil || b.ID != a.ID || b.CreationDateTimeUTC != a.CreationDateTimeUTC {
		t.Errorf("cut action reads as %+v, %v", b, err)
	}
}

func TestParseActionErrors(t *testing.T) {
	t.Parallel()
	for _, body := range []string{
		``,
		`null`,
		`[]`,
		`{}`,
		`{"id": null, "type": "Offboard"}`,
		`{"id": "", "type": "Offboard"}`,
		`{"id": 42}`,
		`{"id": "x"`,
		`<html>502</html>`,
		// Nested past what a result and a ledger entry can carry and
		// still be read back.
		`{"id": "x", "commands": ` + strings.Repeat("[", 65) + strings.Repeat("]", 65) + `}`,
	} {
		if a, err := ParseAction([]byte(body)); err == nil {
			t.Errorf("ParseAction(%.80q) = %+v, want an error", body, a)
		}
	}
	// Brackets in strings do not nest; 63 levels under the action's own do.
	deep := `{"id": "x", "comment": "[[{{\\\"[", "commands": ` + strings.Repeat("[", 63) + strings.Repeat("]", 63) + `}`
	if _, err := ParseAction([]byte(deep)); err != nil {
		t.Errorf("an action nested 64 deep: %v", err)
	}
}

func TestActionCreated(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in   string
		want time.Time
	}{
		{"2024-11-24T10:00:01.1234567Z", time.Date(2024, 11, 24, 10, 0, 1, 123456700, time.UTC)},
		{"2024-11-24T10:00:01.1234567", time.Date(2024, 11, 24, 10, 0, 1, 123456700, time.UTC)},
		{"2024-11-24T10:00:01Z", time.Date(2024, 11, 24, 10, 0, 1, 0, time.UTC)},
		{"2024-11-24T10:00:01", time.Date(2024, 11, 24, 10, 0, 1, 0, time.UTC)},
		{"2024-11-24T10:00:01.5", time.Date(2024, 11, 24, 10, 0, 1, 500000000, time.UTC)},
		{"2024-11-24T12:00:01.1234567+02:00", time.Date(2024, 11, 24, 10, 0, 1, 123456700, time.UTC)},
		{"", time.Time{}},
		{"yesterday", time.Time{}},
		{"2024-11-24", time.Time{}},
	}
	for _, tt := range tests {
		got := Action{CreationDateTimeUTC: tt.in}.Created()
		if !got.Equal(tt.want) {
			t.Errorf("Created(%q) = %v, want %v", tt.in, got, tt.want)
		}
		if !got.IsZero() && got.Location() != time.UTC {
			t.Errorf("Created(%q) is in %v, want UTC", tt.in, got.Location())
		}
	}
}

// TestActionUnfinished: a status is read whatever its case: an action
// handed back "pending" is unfinished, not taken for the request's own.
func TestActionUnfinished(t *testing.T) {
	t.Parallel()
	for status, want := range map[string]bool{
		"Pending": true, "InProgress": true, "pending": true, "PENDING": true, "inprogress": true,
		"Succeeded": false, "Failed": false, "TimeOut": false, "Cancelled": false, "": false, "Queued": false,
	} {
		if got := (Action{Status: status}).Unfinished(); got != want {
			t.Errorf("Unfinished(%q) = %v, want %v", status, got, want)
		}
	}
	for status, want := range map[string]bool{
		"Succeeded": true, "Failed": true, "TimeOut": true, "Cancelled": true,
		"succeeded": true, "FAILED": true, "timeout": true, "cancelled": true,
		"Pending": false, "inprogress": false, "": false, "Canceled": false,
	} {
		if got := (Action{Status: status}).Finished(); got != want {
			t.Errorf("Finished(%q) = %v, want %v", status, got, want)
		}
	}
	for in, want := range map[string]string{"pending": "Pending", "TIMEOUT": "TimeOut", "Succeeded": "Succeeded", "Queued": "Queued", "": "", "Succeeded\r\n": "Succeeded", " \tQueued ": "Queued"} {
		if got := StatusSpelled(in); got != want {
			t.Errorf("StatusSpelled(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestActionOffboardOf(t *testing.T) {
	t.Parallel()
	other := strings.Repeat("ab", 20)
	for _, tt := range []struct {
		a    Action
		want bool
	}{
		{Action{Type: "Offboard", MachineID: testMachineID}, true},
		{Action{Type: "Offboard", MachineID: strings.ToUpper(testMachineID)}, true},
		// Null or missing (MDE-API.md: seen null on a fresh offboard).
		{Action{Type: "Offboard"}, true},
		{Action{MachineID: testMachineID}, true},
		{Action{}, true},
		{Action{Type: "Offboard", MachineID: other}, false},
		{Action{Type: "Isolate", MachineID: testMachineID}, false},
		{Action{Type: "Isolate"}, false},
	} {
		if got := tt.a.OffboardOf(testMachineID); got != tt.want {
			t.Errorf("%+v.OffboardOf(%s) = %v, want %v", tt.a, testMachineID, got, tt.want)
		}
	}
}

func TestParseActions(t *testing.T) {
	t.Parallel()
	first := `{"id": "5382f7ea-7557-4ab7-9782-d50480024a4e","type": "Offboard","status": "Pending","machineId": "` + testMachineID + `","computerDnsName": "pc.contoso.local","creationDateTimeUtc": "2024-11-24T10:00:01.1234567Z"}`
	second := `{"id":"0f6a6d7c-5a3e-4c1f-9b1e-3c1d2e4f5a6b","type":"Offboard","status":"Failed","machineId":null,"creationDateTimeUtc":"2024-11-20T08:00:00"}`

	tests := []struct {
		name    string
		body    string
		want    []Action
		wantErr bool
	}{
		{
			name: "two actions",
			body: `{"@odata.context": "https://api.securitycenter.microsoft.com/api/$metadata#MachineActions", "value": [` + first + `, ` + second + `]}`,
			want: []Action{
				// Raw is the action without the white space between its tokens.
				{ID: testActionID, Type: "Offboard", Status: "Pending", MachineID: testMachineID, ComputerDNSName: "pc.contoso.local", CreationDateTimeUTC: "2024-11-24T10:00:01.1234567Z", Raw: []byte(strings.ReplaceAll(first, `": "`, `":"`))},
				{ID: "0f6a6d7c-5a3e-4c1f-9b1e-3c1d2e4f5a6b", Type: "Offboard", Status: "Failed", CreationDateTimeUTC: "2024-11-20T08:00:00", Raw: []byte(second)},
			},
		},
		{name: "empty list", body: `{"value": []}`, want: []Action{}},
		{name: "no value", body: `{"@odata.context": "x"}`, wantErr: true},
		{name: "value null", body: `{"value": null}`, wantErr: true},
		{name: "an action without id", body: `{"value": [` + first + `, {"type": "Offboard"}]}`, wantErr: true},
		{name: "value is not a list", body: `{"value": {}}`, wantErr: true},
		{name: "not JSON", body: `<html></html>`, wantErr: true},
		// Part of the list: an action on a page not read (the device's
		// pending one, or the one a lost answer made) would be taken
		// for none.
		{name: "more follow", body: `{"value": [` + second + `], "@odata.nextLink": "https://api.securitycenter.microsoft.com/api/machineactions?$skip=1"}`, wantErr: true},
		{name: "a link null", body: `{"value": [], "@odata.nextLink": null}`, want: []Action{}},
		{name: "a link empty", body: `{"value": [], "@odata.nextLink": ""}`, want: []Action{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := ParseActions([]byte(tt.body))
			if (err != nil) != tt.wantErr {
				t.Fatalf("ParseActions: err = %v, want error %v", err, tt.wantErr)
			}
			if tt.wantErr {
				return
			}
			if len(got) != len(tt.want) {
				t.Fatalf("ParseActions = %d actions, want %d", len(got), len(tt.want))
			}
			for i := range got {
				g, w := got[i], tt.want[i]
				if g.ID != w.ID || g.Type != w.Type || g.Status != w.Status || g.MachineID != w.MachineID ||
					g.ComputerDNSName != w.ComputerDNSName || g.CreationDateTimeUTC != w.CreationDateTimeUTC || string(g.Raw) != string(w.Raw) {
					t.Errorf("action %d = %+v (Raw %s), want %+v (Raw %s)", i, g, g.Raw, w, w.Raw)
				}
			}
		})
	}
}

func TestParseMachines(t *testing.T) {
	t.Parallel()
	body := `{
  "@odata.context": "https://api.securitycenter.microsoft.com/api/$metadata#Machines",
  "value": [
    {"id": "` + testMachineID + `", "computerDnsName": "pc.contoso.local", "firstSeen": "2023-01-01T00:00:00Z",
     "lastSeen": "2024-11-24T09:00:00.1234567Z", "osPlatform": "Windows11", "healthStatus": "Active",
     "machineTags": ["retired"], "rbacGroupId": 42, "rbacGroupName": "Tier 0 servers", "ipAddresses": [{"ipAddress": "10.0.0.1"}]},
    {"id": "ffffffffffffffffffffffffffffffffffffffff", "computerDnsName": "pc.contoso.local", "lastSeen": null,
     "osPlatform": "WindowsServer2019", "healthStatus": "Inactive", "machineTags": null, "rbacGroupId": null, "rbacGroupName": null}
  ]
}`
	got, err := ParseMachines([]byte(body))
	if err != nil {
		t.Fatalf("ParseMachines: %v", err)
	}
	want := []Machine{
		{ID: testMachineID, ComputerDNSName: "pc.contoso.local", LastSeen: "2024-11-24T09:00:00.1234567Z", HealthStatus: "Active", OSPlatform: "Windows11",
			MachineTags: []string{"retired"}, RbacGroupID: "42", RbacGroupName: "Tier 0 servers"},
		{ID: "ffffffffffffffffffffffffffffffffffffffff", ComputerDNSName: "pc.contoso.local", HealthStatus: "Inactive", OSPlatform: "WindowsServer2019"},
	}
	if len(got) != len(want) {
		t.Fatalf("ParseMachines = %+v, want %+v", got, want)
	}
	for i := range want {
		if !reflect.DeepEqual(got[i], want[i]) {
			t.Errorf("machine %d = %+v, want %+v", i, got[i], want[i])
		}
	}

	for _, bad := range []string{`<html></html>`, `{"value": "x"}`, ``, `{}`, `{"value": null}`} {
		if m, err := ParseMachines([]byte(bad)); err == nil {
			t.Errorf("ParseMachines(%q) = %+v, want an error", bad, m)
		}
	}
	if m, err := ParseMachines([]byte(`{"value": []}`)); err != nil || len(m) != 0 {
		t.Errorf("ParseMachines(empty list) = %+v, %v", m, err)
	}
}

func TestParseMachine(t *testing.T) {
	t.Parallel()
	body := `{"@odata.context": "https://api.securitycenter.microsoft.com/api/$metadata#Machines/$entity",
  "id": "` + testMachineID + `", "computerDnsName": "pc.contoso.local", "lastSeen": "2024-11-24T09:00:00.1234567Z",
  "osPlatform": "Windows11", "healthStatus": "Active", "machineTags": [], "rbacGroupId": "7", "rbacGroupName": "Workstations"}`
	got, err := ParseMachine([]byte(body))
	if err != nil {
		t.Fatalf("ParseMachine: %v", err)
	}
	want := Machine{ID: testMachineID, ComputerDNSName: "pc.contoso.local", LastSeen: "2024-11-24T09:00:00.1234567Z", OSPlatform: "Windows11", HealthStatus: "Active",
		MachineTags: []string{}, RbacGroupID: "7", RbacGroupName: "Workstations"}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("ParseMachine = %+v, want %+v", got, want)
	}
	for _, bad := range []string{`<html></html>`, `[]`, ``} {
		if m, err := ParseMachine([]byte(bad)); err == nil {
			t.Errorf("ParseMachine(%q) = %+v, want an error", bad, m)
		}
	}
}

func TestMachineLastSeenTime(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		lastSeen string
		want     time.Time
		ok       bool
	}{
		{"2024-11-24T09:00:00.1234567Z", time.Date(2024, 11, 24, 9, 0, 0, 123456700, time.UTC), true},
		{"2024-11-24T10:00:00+01:00", time.Date(2024, 11, 24, 9, 0, 0, 0, time.UTC), true},
		{"2024-11-24T09:00:00", time.Date(2024, 11, 24, 9, 0, 0, 0, time.UTC), true},
		{"", time.Time{}, false},
		{"yesterday", time.Time{}, false},
		// In UTC these fall outside the years RFC 3339 can write, so the
		// result's policy.lastSeen could not carry them as a date-time.
		{"9999-12-31T23:59:59-01:00", time.Time{}, false},
		{"0000-01-01T00:00:00+01:00", time.Time{}, false},
		{"9999-12-31T23:59:59Z", time.Date(9999, 12, 31, 23, 59, 59, 0, time.UTC), true},
	} {
		got, ok := Machine{LastSeen: c.lastSeen}.LastSeenTime()
		if ok != c.ok || !got.Equal(c.want) {
			t.Errorf("LastSeenTime(%q) = %v, %v; want %v, %v", c.lastSeen, got, ok, c.want, c.ok)
		}
	}
}

// TestStatusSpelledFoldsASCIIOnly: a status is another case of a
// documented one in ASCII letters alone: one with a letter Unicode alone
// folds (a long s) is no documented status, neither final nor pending,
// and is published as the API wrote it.
func TestStatusSpelledFoldsASCIIOnly(t *testing.T) {
	t.Parallel()
	for _, status := range []string{"\u017fucceeded", "InProgre\u017f\u017f", "Pending\u0000"} {
		if got := StatusSpelled(status); got != status {
			t.Errorf("StatusSpelled(%q) = %q, want it as written", status, got)
		}
		if a := (Action{Status: status}); a.Finished() || a.Unfinished() {
			t.Errorf("%q read as a documented status", status)
		}
	}
}

// TestActionUpdatedUnderEitherName: the documented action writes its
// last update as lastUpdateDateTimeUtc, the documented list examples as
// lastUpdateTimeUtc. An action of a list that has only the second must
// still tell when it was updated: a lost answer's action without a
// creation time is recognised by it.
func TestActionUpdatedUnderEitherName(t *testing.T) {
	t.Parallel()
	want := time.Date(2024, 11, 24, 10, 0, 1, 123456700, time.UTC)
	for _, field := range []string{"lastUpdateDateTimeUtc", "lastUpdateTimeUtc"} {
		actions, err := ParseActions([]byte(`{"value": [{"id": "` + testActionID + `", "type": "Offboard", "status": "Pending", "creationDateTimeUtc": null, "` + field + `": "2024-11-24T10:00:01.1234567Z"}]}`))
		if err != nil {
			t.Fatalf("%s: %v", field, err)
		}
		if got := actions[0].Updated(); !got.Equal(want) {
			t.Errorf("%s: Updated() = %v, want %v", field, got, want)
		}
		if got := actions[0].Created(); !got.IsZero() {
			t.Errorf("%s: Created() = %v, want none", field, got)
		}
	}
}
