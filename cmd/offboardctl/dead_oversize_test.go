package main

import (
	"strings"
	"testing"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/contoso-secops/mde-offboard/offboard"
)

// TestDeadRetryOverTheRequestSize: a dead letter whose body is just
// under the 64 KiB a request may have, and passed the request's checks,
// would with its next attempt written in be over them. The request
// stream takes such a message (it leaves room for headers), and the
// worker answers it invalid_request: the retry never reaches the API,
// each run of dead retry adds a failed result and a dead letter, and the
// operator is told it was retried. It is refused, not published, and
// the dead letters after it are retried.
func TestDeadRetryOverTheRequestSize(t *testing.T) {
	t.Parallel()
	url, js := natsWithStreams(t)
	a := strings.Repeat("a", 40)
	big := `{"requestId":"x-1","machineId":"` + a + `"}`
	big = big[:len(big)-1] + strings.Repeat(" ", offboard.MaxRequestSize-len(big)-4) + "}"
	if _, err := offboard.ParseRequest([]byte(big), "contoso"); err != nil {
		t.Fatalf("the dead letter's body must pass the checks: %v", err)
	}
	publishDead(t, js, offboard.CodeAPIError, big, `{"requestId":"x-2","machineId":"`+a+`"}`)

	code, out, errs := ctl(t, url, "dead", "retry", "contoso", "--all")
	if code != exitFailed || !strings.Contains(out, "dead letter 1: ") || !strings.Contains(out, "more than 65536") ||
		strings.Contains(out, "retried x-1") || !strings.Contains(out, "retried x-2 attempt 2") ||
		!strings.Contains(out, "1 retried, 0 retried before (the stream dropped the repeat), 1 not retried") ||
		strings.Count(errs, "\n") != 1 {
		t.Errorf("dead retry --all: exit %d, stdout %q, stderr %q", code, out, errs)
	}
	var ids []string
	err := scan(t.Context(), js, offboard.StreamRequests, offboard.Subjects{}.Request("contoso", offboard.Normal), func(m jetstream.Msg) {
		ids = append(ids, m.Headers().Get(jetstream.MsgIDHeader))
	})
	if err != nil || len(ids) != 1 || ids[0] != "contoso:x-2:2" {
		t.Errorf("published %v (%v), want the retry of x-2 alone", ids, err)
	}
}
