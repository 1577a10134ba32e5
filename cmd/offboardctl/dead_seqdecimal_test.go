package main

import (
	"fmt"
	"strings"
	"testing"

	"github.com/contoso-secops/mde-offboard/offboard"
)

// TestDeadRetrySeqIsDecimal: --seq is the decimal sequence dead ls
// shows. It was read in Go's number syntax: --seq 010 retried dead
// letter 8, --seq 0x1 dead letter 1, and 1_0 dead letter 10, each another
// request than one might mean, without a word. A leading zero is now
// a decimal number's (010 is 10), and a hex, octal, binary or
// underscored number is bad usage, one line, exit 2, nothing published.
func TestDeadRetrySeqIsDecimal(t *testing.T) {
	t.Parallel()
	url, js := natsWithStreams(t)
	a := strings.Repeat("a", 40)
	for i := 1; i <= 10; i++ {
		publishDead(t, js, offboard.CodeAPIError, fmt.Sprintf(`{"requestId":"x-%d","machineId":"%s"}`, i, a))
	}
	requests := func() uint64 {
		s, err := js.Stream(t.Context(), offboard.StreamRequests)
		if err != nil {
			t.Fatal(err)
		}
		return s.CachedInfo().State.Msgs
	}
	for _, seq := range []string{"0x1", "0o7", "0b1", "1_0", "+3"} {
		code, out, errs := ctl(t, url, "dead", "retry", "contoso", "--seq", seq)
		if code != exitUsage || out != "" || strings.Count(errs, "\n") != 1 {
			t.Errorf("--seq %s: exit %d, stdout %q, stderr %q; want bad usage, one line", seq, code, out, errs)
		}
	}
	if n := requests(); n != 0 {
		t.Fatalf("%d requests published for sequences that are no decimal number, want none", n)
	}
	code, out, errs := ctl(t, url, "dead", "retry", "contoso", "--seq", "010")
	if code != exitOK || !strings.Contains(out, "retried x-10 attempt 2 (dead letter 10,") {
		t.Errorf("--seq 010: exit %d, stdout %q, stderr %q; want dead letter 10 retried", code, out, errs)
	}
}
