package main

import (
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/contoso-secops/mde-offboard/internal/queue"
	"github.com/contoso-secops/mde-offboard/internal/queue/natstest"
	"github.com/contoso-secops/mde-offboard/offboard"
)

// TestSubjectPrefixNotTheWorkers: a --subject-prefix (or its variable)
// other than the one the worker runs with is refused before anything is
// read or written: with it, dead ls listed nothing of the dead letters
// there are, status read no call of the quota journal, and pause wrote
// the pause, which the worker applies, then failed on its audit event.
func TestSubjectPrefixNotTheWorkers(t *testing.T) {
	t.Parallel()
	url, js := natsWithStreams(t)
	publishDead(t, js, offboard.CodeMachineNotFound, `{"requestId":"x-1","machineId":"`+strings.Repeat("a", 40)+`"}`)
	// A typo, and a prefix under the worker's, whose subjects the
	// stream's would take but where nothing is ever published.
	for _, prefix := range []string{"mde.offbaord", "mde.offboard.request"} {
		for _, args := range [][]string{
			{"dead", "ls", "--json"},
			{"dead", "retry", "contoso", "--all"},
			{"status", "--json"},
			{"pause", "contoso"},
		} {
			code, out, errs := ctl(t, url, append([]string{"--subject-prefix", prefix}, args...)...)
			if code != exitFailed || out != "" || !strings.Contains(errs, "mde.offboard.request.>") || strings.Count(errs, "\n") != 1 {
				t.Errorf("%s %q: exit %d, stdout %q, stderr %q; want exit 1 naming the worker's subjects, nothing on stdout", prefix, args, code, out, errs)
			}
		}
	}
	if view := storedControls(t, js); view.Paused("contoso", offboard.Normal) {
		t.Error("contoso paused under a prefix no worker runs with")
	}
	// The worker's own prefix, given: as without it.
	if code, out, errs := ctl(t, url, "--subject-prefix", "mde.offboard", "dead", "ls", "--json"); code != exitOK || !strings.Contains(out, "x-1") {
		t.Errorf("dead ls with the worker's prefix: exit %d, stdout %q, stderr %q", code, out, errs)
	}
}

// TestSubjectPrefixCheckWithoutStreamInfo: a user who may not read the
// request stream's information (a credential that reads the dead letters
// alone) is not made to wait for it: the server refuses the request at
// once, and the command goes on as it did before the prefix was checked,
// rather than after --connect-timeout.
func TestSubjectPrefixCheckWithoutStreamInfo(t *testing.T) {
	t.Parallel()
	url, js := natsWithReader(t, "$JS.API.STREAM.INFO."+offboard.StreamRequests)
	publishDead(t, js, offboard.CodeMachineNotFound, `{"requestId":"x-1","machineId":"`+strings.Repeat("a", 40)+`"}`)
	const timeout = 20 * time.Second
	start := time.Now()
	code, out, errs := ctl(t, url, "--connect-timeout", timeout.String(), "dead", "ls", "--json")
	if took := time.Since(start); code != exitOK || !strings.Contains(out, "x-1") || took >= timeout/2 {
		t.Errorf("dead ls: exit %d after %v, stdout %q, stderr %q; want the dead letter, without waiting out --connect-timeout %v", code, took, out, errs, timeout)
	}
}

// natsWithReader starts a NATS server with the streams, and returns the
// URL of a user "reader" who may publish on any subject but those of
// deny, and JetStream for a user who may do anything.
func natsWithReader(t *testing.T, deny ...string) (readerURL string, admin jetstream.JetStream) {
	t.Helper()
	url := natstest.StartWithUsers(t, &server.User{Username: "reader", Password: "pw", Permissions: &server.Permissions{
		Publish: &server.SubjectPermission{Allow: []string{">"}, Deny: deny},
	}}, &server.User{Username: "admin", Password: "pw"})
	_, js := natstest.ConnectTo(t, url, nats.UserInfo("admin", "pw"))
	if _, err := queue.Ensure(t.Context(), js, queue.Settings{Tenants: []string{"contoso"}}); err != nil {
		t.Fatal(err)
	}
	return "nats://reader:pw@" + strings.TrimPrefix(url, "nats://"), js
}
