package worker

import (
	"bytes"
	"io"
	"net"
	"net/http"
	"net/http/httptrace"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"

	"github.com/contoso-secops/mde-offboard/offboard"
)

// unreachableAfterLostAnswer is an API transport whose device action
// lists are behind (they answer none) until the second offboard attempt,
// which gets no connection: the first attempt's action shows as the
// second fails to go out.
type unreachableAfterLostAnswer struct {
	next     http.RoundTripper
	offboard atomic.Int32
	shown    atomic.Bool
}

func (u *unreachableAfterLostAnswer) RoundTrip(req *http.Request) (*http.Response, error) {
	switch {
	case req.Method == http.MethodPost && u.offboard.Add(1) > 1:
		u.shown.Store(true)
		// As Go's transport reports a dial that failed.
		if tr := httptrace.ContextClientTrace(req.Context()); tr != nil && tr.GetConn != nil {
			tr.GetConn(req.URL.Host)
		}
		return nil, &net.OpError{Op: "dial", Net: "tcp", Err: syscall.ECONNREFUSED}
	case req.Method == http.MethodGet && strings.HasPrefix(req.URL.Path, "/api/machineactions") && !u.shown.Load():
		return &http.Response{StatusCode: http.StatusOK, Header: http.Header{"Content-Type": {"application/json"}},
			Body: io.NopCloser(bytes.NewReader([]byte(`{"value":[]}`))), Request: req}, nil
	}
	return u.next.RoundTrip(req)
}

// TestLostAnswerLookedForWhenTheLastAttemptHadNoConnection: a request's
// first offboard attempt takes effect but its answer is lost, and the
// looks right after find no action (lists behind); its last attempt gets
// no connection to the API host, while the action shows. The request
// looks for it before it gives up, and is answered created with it.
// Before, an attempt not sent was not an outcome unknown, so the request
// gave up without a look and was answered api_error, saying nothing was
// sent, with the first attempt's action on the device.
func TestLostAnswerLookedForWhenTheLastAttemptHadNoConnection(t *testing.T) {
	t.Parallel()
	tr := &unreachableAfterLostAnswer{}
	e := setupLoopTransport(t, `["100/1m"]`, "", RetryPolicy{Attempts: 2, NotFoundCheck: 1}, nil,
		func(next http.RoundTripper) http.RoundTripper { tr.next = next; return tr })
	e.sim.LoseAnswers(loopTenantID, 1)
	e.publishR1(t, "offboard r-1")
	r := e.resultDriven(t)
	if n := tr.offboard.Load(); n != 2 {
		t.Errorf("%d offboard attempts, want 2", n)
	}
	if n := len(e.sim.Actions(loopTenantID)); n != 1 {
		t.Errorf("%d actions for the device, want 1", n)
	}
	if r.RequestID != "r-1" || r.Outcome != offboard.OutcomeCreated {
		t.Errorf("result %s %s %+v, want r-1 created with the first attempt's action", r.RequestID, r.Outcome, r.Error)
	}
}
