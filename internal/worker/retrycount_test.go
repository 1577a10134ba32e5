package worker

import (
	"context"
	"net/http"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/contoso-secops/mde-offboard/internal/mde"
)

// TestRetryNotCountedWhenTheStopComesFirst: a call waiting to be made
// again, after a 429's pause or a 503's backoff, is no retry when the
// worker stops first and the request goes back to the stream:
// mde_offboard_api_retries_total counts calls made again. A 429 was
// counted before its pause, so a stop during the pause left a retry no
// call was made for, where a 503's, counted after its backoff, was not.
func TestRetryNotCountedWhenTheStopComesFirst(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		name   string
		status int
		reason string
	}{
		{"429", http.StatusTooManyRequests, "throttled"},
		{"503", http.StatusServiceUnavailable, "server_error"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			// Pauses and backoffs of an hour, on a clock that stands still.
			e := setupLoop(t, `["100/1m"]`, RetryPolicy{Base: time.Hour, Max: time.Hour})
			e.sim.InjectStatus(loopTenantID, mde.APIOffboard, tt.status, "", "", 1, time.Hour)
			e.publish(t, "r-1")
			e.waitForCalls(t, mde.APIOffboard, 1)
			time.Sleep(200 * time.Millisecond) // the request is in its wait
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			if err := e.w.Stop(ctx); err != nil {
				t.Fatalf("Stop: %v", err)
			}
			if n := len(e.sim.Calls()); n != 1 {
				t.Fatalf("%d calls, want the first alone", n)
			}
			if v := testutil.ToFloat64(e.w.m.Retries.WithLabelValues(mde.APIOffboard, tt.reason)); v != 0 {
				t.Errorf("api_retries_total{offboard,%s} = %v after a stop before the call was made again, want 0", tt.reason, v)
			}
		})
	}
}
