package main

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/contoso-secops/mde-offboard/internal/campaign"
	"github.com/contoso-secops/mde-offboard/internal/queue"
	"github.com/contoso-secops/mde-offboard/internal/queue/natstest"
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

// TestCancelEventOfAClockAheadIsNotStoredTwice: the next cancel judged
// whether the first one's event could still be dropped as a repeat by
// this machine's clock against the mark's time, the first machine's: a
// mark made where the clock ran an hour ahead had its event, stored and
// past the stream's duplicate window, stored again by every cancel for
// that hour. The server's own times judge it now.
func TestCancelEventOfAClockAheadIsNotStoredTwice(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	url := natstest.StartWithUsers(t, &server.User{Username: "admin", Password: "pw"})
	_, js := natstest.ConnectTo(t, url, nats.UserInfo("admin", "pw"))
	if _, err := queue.Ensure(ctx, js, queue.Settings{Tenants: []string{"contoso"}, Duplicates: 300 * time.Millisecond}); err != nil {
		t.Fatal(err)
	}
	kv, err := campaign.ControlBucket(ctx, js)
	if err != nil {
		t.Fatal(err)
	}
	// The first cancel, where the clock runs an hour ahead: its mark and
	// its event stored.
	m := campaign.Mark{Cancelled: true, By: "zoe", Reason: "wrong list", At: time.Now().Add(time.Hour).UTC()}
	if err := campaign.SetMark(ctx, kv, "contoso", "camp", m); err != nil {
		t.Fatal(err)
	}
	if stored, err := (&cli{}).publishCancelEvent(ctx, js, "contoso", "camp", &m); err != nil || !stored {
		t.Fatalf("the first cancel's event: stored %v, %v", stored, err)
	}
	// Wait until the stream has forgotten its message id: a probe sent
	// after it, sent again, is stored again.
	probe := func() bool {
		msg := nats.NewMsg(offboard.Subjects{}.Control("contoso"))
		msg.Header.Set(jetstream.MsgIDHeader, "probe")
		ack, err := js.PublishMsg(ctx, msg)
		if err != nil {
			t.Fatal(err)
		}
		return !ack.Duplicate
	}
	probe()
	for deadline := time.Now().Add(time.Minute); !probe(); time.Sleep(50 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the probe's message id still a repeat after a minute")
		}
	}
	before := controlEvents(t, js)
	var out, errb bytes.Buffer
	code := run([]string{"--nats-url", "nats://admin:pw@" + strings.TrimPrefix(url, "nats://"), "--connect-timeout", "5s",
		"campaign", "cancel", "--tenant", "contoso", "--name", "camp", "--as", "zoe"}, &out, &errb)
	if code != exitOK || !strings.Contains(out.String(), "cancelled already") {
		t.Errorf("cancel again: exit %d, stdout %q, stderr %q; want 0, cancelled already", code, out.String(), errb.String())
	}
	if after := controlEvents(t, js); after != before {
		t.Errorf("cancel again: %d control events, %d before, stdout %q; want the first cancel's event not stored twice", after, before, out.String())
	}
}
