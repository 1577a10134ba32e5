package main

import (
	"bytes"
	"testing"
	"time"

	"github.com/contoso-secops/mde-offboard/internal/queue"
	"github.com/contoso-secops/mde-offboard/internal/queue/natstest"
)

// TestConnectionClosedWhateverTheExit: a command that connected closes
// its NATS connection when it ends, failed (exit 1) or refused as bad
// usage (exit 2) as when it succeeds. A failed one left it open: cobra
// runs a persistent post-run only after a command that succeeded.
func TestConnectionClosedWhateverTheExit(t *testing.T) {
	t.Parallel()
	c := natstest.Start(t, 1)
	_, js := c.Connect(t)
	if _, err := queue.Ensure(t.Context(), js, queue.Settings{Tenants: []string{"contoso"}}); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		args []string
		code int
	}{
		{[]string{"dead", "ls", "contoso"}, exitOK},
		{[]string{"dead", "ls", "contosso"}, exitFailed},                // no such tenant, found once connected
		{[]string{"budget", "contoso", "500/48h"}, exitUsage},           // longer than the journal counts, found once connected
		{[]string{"pause", "contosso", "--reason", "test"}, exitFailed}, // no such tenant
		{[]string{"campaign", "status", "--tenant", "contoso", "--name", "none"}, exitFailed},
	} {
		var out, errb bytes.Buffer
		if code := run(append([]string{"--nats-url", c.URLs()}, tc.args...), &out, &errb); code != tc.code {
			t.Fatalf("%q: exit %d, want %d (stderr %q)", tc.args, code, tc.code, errb.String())
		}
		deadline := time.Now().Add(5 * time.Second)
		for c.NumClients(0) != 1 { // the test's own
			if time.Now().After(deadline) {
				t.Fatalf("%q (exit %d): %d client connections 5s after it ended, want the test's own only", tc.args, tc.code, c.NumClients(0))
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
}
