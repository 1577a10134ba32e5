package main

import (
	"strings"
	"testing"

	"github.com/nats-io/nats.go"

	"github.com/contoso-secops/mde-offboard/offboard"
)

// TestDeadRetrySeqOfAnotherTenant: dead ls lists every tenant's dead
// letters, and a sequence copied from it under the wrong tenant was
// refused as "no dead letter N of tenant T", as one that was never there
// or was removed: the operator could not tell a wrong tenant from a
// dead letter gone. It names the tenant the dead letter is of, and says
// so of one the stream no longer holds; nothing is published.
func TestDeadRetrySeqOfAnotherTenant(t *testing.T) {
	t.Parallel()
	url, js := natsWithStreams(t)
	a := strings.Repeat("a", 40)
	publishDead(t, js, offboard.CodeAPIError, `{"requestId":"x-1","machineId":"`+a+`"}`) // 1
	m := nats.NewMsg(offboard.Subjects{}.Dead("fabrikam"))                               // 2
	m.Data = []byte(`{"requestId":"f-1","machineId":"` + a + `"}`)
	m.Header.Set(offboard.HeaderErrorCode, offboard.CodeAPIError)
	m.Header.Set(offboard.HeaderOriginalSubject, offboard.Subjects{}.Request("fabrikam", offboard.Normal))
	if _, err := js.PublishMsg(t.Context(), m); err != nil {
		t.Fatal(err)
	}

	code, out, errs := ctl(t, url, "dead", "retry", "contoso", "--seq", "2")
	if code != exitFailed || !strings.Contains(errs, "dead letter 2 is tenant fabrikam's, not contoso's") ||
		!strings.Contains(errs, "dead retry fabrikam --seq 2") || strings.Count(errs, "\n") != 1 || out != "" {
		t.Errorf("retry contoso --seq 2: exit %d, stdout %q, stderr %q", code, out, errs)
	}
	code, out, errs = ctl(t, url, "dead", "retry", "contoso", "--seq", "9")
	if code != exitFailed || !strings.Contains(errs, "no dead letter 9 of tenant contoso: "+offboard.StreamDead+" does not hold it") ||
		strings.Count(errs, "\n") != 1 || out != "" {
		t.Errorf("retry contoso --seq 9: exit %d, stdout %q, stderr %q", code, out, errs)
	}
	s, err := js.Stream(t.Context(), offboard.StreamRequests)
	if err != nil {
		t.Fatal(err)
	}
	if n := s.CachedInfo().State.Msgs; n != 0 {
		t.Errorf("%d requests published, want none", n)
	}
}
