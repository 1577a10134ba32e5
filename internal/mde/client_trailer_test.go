package mde

import (
	"context"
	"net/http"
	"strconv"
	"strings"
	"testing"
)

// A server that echoes the request's Authorization header in a trailer
// line the transport cannot read, after the body, gets an error from Go's
// HTTP client, while the body is read, that quotes that line: the
// verdict's message, which reaches results, dead letters and logs, does
// not carry the token, whichever call read the answer.
func TestBodyReadErrorQuotingTheTokenIsScrubbed(t *testing.T) {
	t.Parallel()
	const opaque = "opaque-access-token-0123456789abcdef"
	for _, tt := range []struct {
		name   string
		status int
		body   string
		call   func(context.Context, *Client) *Verdict
	}{
		{"offboard answered 201", http.StatusCreated, pendingAction, func(ctx context.Context, c *Client) *Verdict {
			return c.Offboard(ctx, testMachineID, "c")
		}},
		{"offboard answered 400", http.StatusBadRequest, `{"error":{"code":"BadRequest","message":"no"}}`, func(ctx context.Context, c *Client) *Verdict {
			return c.Offboard(ctx, testMachineID, "c")
		}},
		{"lookup by name", http.StatusOK, `{"value":[]}`, func(ctx context.Context, c *Client) *Verdict {
			return c.FindMachinesByName(ctx, "pc1.contoso.local")
		}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			f := setupAPI(t, rawAnswer(t, func(r *http.Request) string {
				// The trailer line has no colon: textproto quotes it whole.
				return "HTTP/1.1 " + strconv.Itoa(tt.status) + " X\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n" +
					strconv.FormatInt(int64(len(tt.body)), 16) + "\r\n" + tt.body + "\r\n0\r\n" +
					strings.TrimPrefix(r.Header.Get("Authorization"), "Bearer ") + "\r\n\r\n"
			}), nil)
			f.cred.token = opaque
			v := tt.call(context.Background(), f.client)
			if v.Class == Success {
				t.Fatal("an answer that did not come whole taken as a success")
			}
			if msg := v.Error(); strings.Contains(msg, opaque) || strings.Contains(msg, "access-token") {
				t.Errorf("verdict message holds the token: %s", msg)
			}
		})
	}
}
