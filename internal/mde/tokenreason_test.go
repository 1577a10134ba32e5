package mde

import (
	"context"
	"errors"
	"net/http"
	"slices"
	"testing"
	"time"
)

// TestTokenFailureReasons: every way a token cannot be had gives a
// verdict with one reason of the fixed list (the label of
// mde_offboard_token_failures_total), and an attempt that got its token
// gives none.
func TestTokenFailureReasons(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		err  error
		want string
	}{
		{"secret refused", &TokenError{Final: true, failure: failRefused, Status: http.StatusUnauthorized, AADSTS: "AADSTS7000215"}, TokenRefused},
		{"scope refused", &TokenError{Final: true, failure: failRefused, Status: http.StatusBadRequest, scope: true}, TokenRefused},
		{"identity of another tenant", &TokenError{Final: true, managed: true, failure: failOtherTenant}, TokenRefused},
		{"login host throttles", &TokenError{failure: failRefused, Status: http.StatusTooManyRequests}, TokenThrottled},
		{"login host 503", &TokenError{failure: failRefused, Status: http.StatusServiceUnavailable}, TokenErrorAnswer},
		{"a proxy's page", &TokenError{failure: failRefused, Status: http.StatusForbidden, page: true}, TokenErrorAnswer},
		{"answer unreadable", &TokenError{failure: failUnreadable}, TokenErrorAnswer},
		{"login host unreachable", &TokenError{failure: failNoAnswer, unreached: "connection refused"}, TokenNoAnswer},
		{"certificate file unusable", &TokenError{failure: failCredential, File: "/var/run/secrets/contoso/cert.pem"}, TokenCredential},
		{"library gave none", &TokenError{failure: failUnknown}, TokenOther},
		{"another credential's error", errors.New("some credential failed"), TokenOther},
	} {
		v := ClassifyError(context.Background(), tc.err, false)
		if got := v.TokenFailure(); got != tc.want {
			t.Errorf("%s: reason %q, want %q", tc.name, got, tc.want)
		}
		if !slices.Contains(TokenFailureReasons, v.TokenFailure()) {
			t.Errorf("%s: reason %q is not in the fixed list", tc.name, v.TokenFailure())
		}
	}
	if v := ClassifyError(context.Background(), errors.New("connection reset"), true); v.TokenFailure() != "" {
		t.Errorf("a call sent and cut: token failure %q, want none", v.TokenFailure())
	}
	if v := Classify(http.StatusOK, http.Header{}, []byte(`{}`), time.Time{}); v.TokenFailure() != "" {
		t.Errorf("an answer: token failure %q, want none", v.TokenFailure())
	}
}
