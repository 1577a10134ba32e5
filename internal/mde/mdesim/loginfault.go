package mdesim

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
)

// LoginFault is a way the token endpoint misbehaves, set for every tenant
// with Options.LoginFault or for some requests of one tenant with
// InjectLoginFault. Both faulty answers carry secrets that a client must
// not repeat in its errors or logs.
type LoginFault int

const (
	// LoginNormal answers token requests as Entra ID does.
	LoginNormal LoginFault = iota
	// LoginGarbled answers 200 with a token response MSAL cannot decode
	// (expires_in is the string "3599.0") that carries FaultAccessToken.
	LoginGarbled
	// LoginRefusedLongBody answers 401 invalid_client with AADSTS7000215
	// and correlation id FaultCorrelationID, in a body of about 100 KiB
	// whose description carries FaultSecret.
	LoginRefusedLongBody
	// LoginHugeBody answers 401 invalid_client with an error description
	// of LoginHugeBodySize bytes, as a broken proxy or a hostile host
	// might: a client must stop reading long before its end.
	LoginHugeBody
	// LoginBrokenToken answers 200 with a token response whose access
	// token holds a line break (BrokenAccessToken), as a broken proxy or
	// a hostile host might: no HTTP request can carry it.
	LoginBrokenToken
)

// What the faulty login answers carry.
const (
	// FaultAccessToken is the access token in a LoginGarbled answer.
	FaultAccessToken = "eyJ0eXAiOiJKV1QiLCJhbGciOiJSUzI1NiJ9.eyJhdWQiOiJodHRwczovL2FwaS5zZWN1cml0eWNlbnRlci5taWNyb3NvZnQuY29tIn0.SECRETfaultAccessTokenSignature0123456789"
	// BrokenAccessToken is the access token in a LoginBrokenToken
	// answer.
	BrokenAccessToken = "SECRETbrokenAccessToken0123456789\r\nX-Injected: 1"
	// FaultSecret is the secret-looking string in a LoginRefusedLongBody
	// answer.
	FaultSecret = "SECRET~faultClientSecret.Q8xYz0123456789"
	// FaultCorrelationID is the correlation id of a LoginRefusedLongBody
	// answer.
	FaultCorrelationID = "0f8fad5b-d9cb-469f-a165-70867728950e"
	// FaultAADSTS is the error code of a LoginRefusedLongBody answer.
	FaultAADSTS  = 7000215
	faultTraceID = "7c9e6679-7425-40de-944b-e07fc1f90ae7"
	// faultBodySize is about the size of a LoginRefusedLongBody answer.
	faultBodySize = 100 << 10
	// LoginHugeBodySize is about the size of a LoginHugeBody answer.
	LoginHugeBodySize = 32 << 20
)

var loginFaultNames = map[LoginFault]string{
	LoginNormal:          "",
	LoginGarbled:         "garbled",
	LoginRefusedLongBody: "refused-long-body",
	LoginHugeBody:        "huge-body",
	LoginBrokenToken:     "broken-token",
}

// String returns the fault's name as ParseLoginFault reads it.
func (f LoginFault) String() string { return loginFaultNames[f] }

// ParseLoginFault reads a fault's name: "" (none), "garbled" or
// "refused-long-body", "huge-body" or "broken-token".
func ParseLoginFault(s string) (LoginFault, error) {
	for f, name := range loginFaultNames {
		if s == name {
			return f, nil
		}
	}
	return LoginNormal, errors.New("unknown login fault: want garbled, refused-long-body, huge-body or broken-token")
}

type loginInjection struct {
	fault     LoginFault
	remaining int
}

// InjectLoginFault makes the next n token requests of the tenant answer
// with fault f, replacing an earlier injection for the tenant. A call with
// n <= 0 drops it.
func (s *Server) InjectLoginFault(tenantID string, f LoginFault, n int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	k := strings.ToLower(tenantID)
	if n <= 0 {
		delete(s.loginFaults, k)
		return
	}
	s.loginFaults[k] = &loginInjection{fault: f, remaining: n}
}

// loginFaultLocked returns the fault of the tenant's next token request.
func (s *Server) loginFaultLocked(tenantID string) LoginFault {
	k := strings.ToLower(tenantID)
	inj := s.loginFaults[k]
	if inj == nil {
		return s.opts.LoginFault
	}
	if inj.remaining--; inj.remaining <= 0 {
		delete(s.loginFaults, k)
	}
	return inj.fault
}

// writeLoginFault answers with fault f; it reports false for LoginNormal.
func (s *Server) writeLoginFault(w http.ResponseWriter, f LoginFault) bool {
	switch f {
	case LoginGarbled:
		w.Header().Set("Cache-Control", "no-store, no-cache")
		w.Header().Set("Content-Type", "application/json; charset=utf-8")
		w.WriteHeader(http.StatusOK)
		_, _ = fmt.Fprintf(w, `{"token_type":"Bearer","expires_in":"3599.0","ext_expires_in":"3599.0","access_token":%q}`, FaultAccessToken)
		return true
	case LoginBrokenToken:
		w.Header().Set("Cache-Control", "no-store, no-cache")
		writeJSON(w, http.StatusOK, "application/json; charset=utf-8", map[string]any{
			"token_type": "Bearer", "expires_in": 3599, "ext_expires_in": 3599, "access_token": BrokenAccessToken,
		})
		return true
	case LoginRefusedLongBody:
		ts := s.clock.Now().UTC().Format("2006-01-02 15:04:05Z")
		msg := "Invalid client secret provided. The secret sent was '" + FaultSecret + "'. "
		pad := strings.Repeat("Lorem ipsum dolor sit amet. ", faultBodySize/28)
		desc := fmt.Sprintf("AADSTS%d: %s%s\r\nTrace ID: %s\r\nCorrelation ID: %s\r\nTimestamp: %s",
			FaultAADSTS, msg, pad, faultTraceID, FaultCorrelationID, ts)
		w.Header().Set("Cache-Control", "no-store, no-cache")
		writeJSON(w, http.StatusUnauthorized, "application/json; charset=utf-8", map[string]any{
			"error":             "invalid_client",
			"error_description": desc,
			"error_codes":       []int{FaultAADSTS},
			"timestamp":         ts,
			"trace_id":          faultTraceID,
			"correlation_id":    FaultCorrelationID,
			"error_uri":         fmt.Sprintf("https://login.microsoftonline.com/error?code=%d", FaultAADSTS),
		})
		return true
	case LoginHugeBody:
		w.Header().Set("Content-Type", "application/json; charset=utf-8")
		w.WriteHeader(http.StatusUnauthorized)
		_, _ = io.WriteString(w, `{"error":"invalid_client","error_description":"`)
		chunk := strings.Repeat("x", 64<<10)
		for range LoginHugeBodySize / len(chunk) {
			if _, err := io.WriteString(w, chunk); err != nil {
				return true // the client stopped reading
			}
		}
		_, _ = io.WriteString(w, `"}`)
		return true
	default:
		return false
	}
}
