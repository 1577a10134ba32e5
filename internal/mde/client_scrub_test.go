package mde

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"strings"
	"testing"
)

// escapeAll writes every character of s as a JSON \u escape.
func escapeAll(s string) string {
	var b strings.Builder
	for _, r := range s {
		fmt.Fprintf(&b, `\u%04x`, r)
	}
	return b.String()
}

// A successful answer that quotes the token with JSON escapes, so that
// the bytes sent are not found as they are, has the token taken out as an
// error answer has: the body reaches results and the ledger.
func TestClientSuccessQuotingTheTokenEscaped(t *testing.T) {
	t.Parallel()
	const slashToken = "eyJ0eXAiOiJKV1QifQ.c2xhc2g/dG9rZW4+.sig/part=="
	for _, tt := range []struct {
		name, token, quoted string
	}{
		{"dots as \\u002e", testToken, strings.ReplaceAll(testToken, ".", `\u002e`)},
		{"every character escaped", testToken, escapeAll(testToken)},
		{"slashes as \\/", slashToken, strings.ReplaceAll(slashToken, "/", `\/`)},
		{"upper-case escapes", testToken, strings.ReplaceAll(testToken, "e", `\u0065`)},
		{"inside a sentence", testToken, `Authorization: Bearer ` + strings.ReplaceAll(testToken, ".", `\u002E`) + ` \"quoted\"`},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			action := strings.Replace(pendingAction, `"type":"Offboard"`, `"type":"Offboard","requestorComment":"`+tt.quoted+`"`, 1)
			f := setupAPI(t, answerWith(http.StatusCreated, nil, action), nil)
			f.cred.token = tt.token
			v := f.client.Offboard(context.Background(), testMachineID, "c")
			if v.Class != Success {
				t.Fatalf("verdict = %v %s, want success", v.Class, v.Error())
			}
			a, err := ParseAction(v.Body)
			if err != nil {
				t.Fatalf("ParseAction of the body with the token taken out: %v", err)
			}
			if strings.Contains(a.RequestorComment, tt.token) || bytes.Contains(a.Raw, []byte(tt.quoted)) || bytes.Contains(v.Body, []byte(tt.quoted)) {
				t.Errorf("the action still holds the token (body of %d bytes)", len(v.Body))
			}
			if !strings.Contains(a.RequestorComment, redacted) || a.ID != testActionID || a.Status != "Pending" {
				t.Errorf("action id %q, status %q, requestorComment of %d characters; want the token marked %s and the rest as sent",
					a.ID, a.Status, len(a.RequestorComment), redacted)
			}
		})
	}

	// Text without the token is left as it came, escapes included.
	t.Run("no token", func(t *testing.T) {
		t.Parallel()
		action := strings.Replace(pendingAction, `"type":"Offboard"`, `"type":"Offboard","requestorComment":"a\u002eb \/ \"c\""`, 1)
		f := setupAPI(t, answerWith(http.StatusCreated, nil, action), nil)
		v := f.client.Offboard(context.Background(), testMachineID, "c")
		if string(v.Body) != action {
			t.Errorf("body = %s, want it as sent: %s", v.Body, action)
		}
	})
}

// A server that echoes the request's Authorization header in a status
// line the transport cannot read gets an error from Go's HTTP client
// that quotes that line: the verdict's message, which reaches results,
// dead letters and logs, does not carry the token.
func TestTransportErrorQuotingTheTokenIsScrubbed(t *testing.T) {
	t.Parallel()
	const opaque = "opaque-access-token-0123456789abcdef"
	asCode := func(auth string) string { return "HTTP/1.1 " + strings.TrimPrefix(auth, "Bearer ") + " OK" }
	for _, tt := range []struct {
		name, token string
		status      func(auth string) string
	}{
		{"token as the status code", testToken, asCode},
		{"header as the status line", testToken, func(auth string) string { return auth }},
		{"a token that is no JWT as the status code", opaque, asCode},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			f := setupAPI(t, rawAnswer(t, func(r *http.Request) string {
				return tt.status(r.Header.Get("Authorization")) + "\r\nContent-Length: 0\r\n\r\n"
			}), nil)
			f.cred.token = tt.token
			v := f.client.Offboard(context.Background(), testMachineID, "c")
			if v.Class == Success {
				t.Fatal("an unreadable answer taken as a success")
			}
			if msg := v.Error(); strings.Contains(msg, tt.token) || strings.Contains(msg, "access-token") || strings.Contains(msg, "test-token") {
				t.Errorf("verdict message holds the token: %s", msg)
			}
		})
	}
}

// rawAnswer is a handler that writes what answer gives for the request
// on the connection as it is, bytes the transport may not be able to
// read, and closes it.
func rawAnswer(t *testing.T, answer func(r *http.Request) string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		conn, buf, err := http.NewResponseController(w).Hijack()
		if err != nil {
			t.Error(err)
			return
		}
		defer func() { _ = conn.Close() }()
		_, _ = buf.WriteString(answer(r))
		_ = buf.Flush()
	}
}
