package main

import (
	"bytes"
	"strings"
	"testing"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/contoso-secops/mde-offboard/offboard"
)

// TestCancelEventNotStoredIsStoredByTheNextCancel: a cancel whose mark
// was set but whose control event was not stored (the connection lost
// between the two, no permission) said so, exit 1. Run again, it found
// the campaign cancelled already and said "nothing changed", exit 0: the
// audit trail never had the cancel. The next cancel now stores the
// missing event, under the first one's message id, so that a cancel
// whose event was stored is not told twice.
func TestCancelEventNotStoredIsStoredByTheNextCancel(t *testing.T) {
	t.Parallel()
	readerURL, js := natsWithReader(t, "mde.offboard.control.>")
	adminURL := strings.Replace(readerURL, "reader:", "admin:", 1)
	if _, err := offboard.Publish(t.Context(), js, offboard.Subjects{}, "contoso", offboard.Bulk,
		offboard.Request{RequestID: "camp-000001", MachineID: strings.Repeat("a", 40), Source: "campaign:camp"}); err != nil {
		t.Fatal(err)
	}
	cancel := func(url string) (int, string, string) {
		var out, errb bytes.Buffer
		code := run([]string{"--nats-url", url, "--connect-timeout", "2s", "campaign", "cancel", "--tenant", "contoso", "--name", "camp",
			"--as", "zoe", "--reason", "wrong list"}, &out, &errb)
		return code, out.String(), errb.String()
	}
	if code, out, errs := cancel(readerURL); code != exitFailed || !strings.Contains(errs, "its control event was not stored") {
		t.Fatalf("cancel without leave to publish the event: exit %d, stdout %q, stderr %q; want 1, the event not stored", code, out, errs)
	}
	if n := controlEvents(t, js); n != 0 {
		t.Fatalf("%d control events; want none yet", n)
	}
	for i := range 2 {
		code, out, errs := cancel(adminURL)
		if code != exitOK || !strings.Contains(out, "cancelled already") {
			t.Errorf("cancel %d again: exit %d, stdout %q, stderr %q; want 0, cancelled already", i+1, code, out, errs)
		}
		if told := strings.Contains(out, "not stored then, is stored now"); told != (i == 0) {
			t.Errorf("cancel %d again: stdout %q; want the event told stored now by the first only", i+1, out)
		}
		if n := controlEvents(t, js); n != 1 {
			t.Errorf("after cancel %d again: %d control events; want the first cancel's, once", i+1, n)
		}
	}
}

// controlEvents counts the events stored on contoso's control subject.
func controlEvents(t *testing.T, js jetstream.JetStream) uint64 {
	t.Helper()
	subject := offboard.Subjects{}.Control("contoso")
	s, err := js.Stream(t.Context(), offboard.StreamResults)
	if err != nil {
		t.Fatal(err)
	}
	info, err := s.Info(t.Context(), jetstream.WithSubjectFilter(subject))
	if err != nil {
		t.Fatal(err)
	}
	return info.State.Subjects[subject]
}
