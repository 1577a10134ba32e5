package mde

import (
	"context"
	"io"
	"net/http"
	"strconv"
	"testing"
	"time"

	"github.com/contoso-secops/mde-offboard/offboard"
)

// An error answer whose status says what to do is read by its status when
// its body does not come whole (a connection cut, a body that drips past
// the call's time): a 429 still pauses the tenant for its Retry-After
// (MDE-API.md: match the HTTP status; retrying early keeps the 429s
// coming) and is not taken for a call that may have acted, a 401 still
// gets a new token. The answers whose class the body decides (2xx, 400,
// 404) stay answers that did not come.
func TestErrorAnswerWhoseBodyDoesNotComeWhole(t *testing.T) {
	t.Parallel()
	const body = `{"error":{"code":"429","message":"API calls quota exceeded! maximum allowed 100 per 00:01:00"}}`
	cut := func(status int) http.HandlerFunc {
		return func(w http.ResponseWriter, _ *http.Request) {
			w.Header().Set("Retry-After", "60")
			w.Header().Set("Content-Length", strconv.Itoa(len(body)))
			w.WriteHeader(status)
			io.WriteString(w, body[:10]) // then the connection closes
		}
	}
	drip := func(status int) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Retry-After", "60")
			w.WriteHeader(status)
			io.WriteString(w, body[:10])
			w.(http.Flusher).Flush()
			<-r.Context().Done() // the rest never comes
		}
	}
	for _, tt := range []struct {
		name    string
		h       http.HandlerFunc
		class   Class
		reason  Reason
		after   time.Duration
		refresh bool
		code    string
	}{
		{"429 cut", cut(http.StatusTooManyRequests), Throttled, ReasonThrottled, time.Minute, false, ""},
		{"429 dripping", drip(http.StatusTooManyRequests), Throttled, ReasonThrottled, time.Minute, false, ""},
		{"503 cut", cut(http.StatusServiceUnavailable), Retry, ReasonServerError, time.Minute, false, ""},
		{"401 cut", cut(http.StatusUnauthorized), Final, ReasonUnauthorized, 0, true, offboard.CodeUnauthorized},
		{"403 dripping", drip(http.StatusForbidden), Final, ReasonForbidden, 0, false, offboard.CodeForbidden},
		{"400 cut", cut(http.StatusBadRequest), Retry, ReasonNetwork, 0, false, ""},
		{"404 cut", cut(http.StatusNotFound), Retry, ReasonNetwork, 0, false, ""},
		{"201 cut", cut(http.StatusCreated), Retry, ReasonNetwork, 0, false, ""},
		{"201 dripping", drip(http.StatusCreated), Retry, ReasonTimeout, 0, false, ""},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			f := setupAPI(t, tt.h, func(o *Options) { o.Timeout = 300 * time.Millisecond })
			v := f.client.Offboard(context.Background(), testMachineID, "c")
			if v.Class != tt.class || v.Reason != tt.reason || v.RetryAfter != tt.after || v.RefreshToken != tt.refresh || v.FailureCode != tt.code {
				t.Errorf("verdict %v/%v, Retry-After %v, refresh %v, code %q (%s); want %v/%v, %v, %v, %q",
					v.Class, v.Reason, v.RetryAfter, v.RefreshToken, v.FailureCode, v.Error(), tt.class, tt.reason, tt.after, tt.refresh, tt.code)
			}
			if !v.Sent {
				t.Error("verdict not sent")
			}
		})
	}
}
