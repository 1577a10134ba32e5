package main

import (
	"bytes"
	"testing"

	"github.com/contoso-secops/mde-offboard/internal/queue"
	"github.com/contoso-secops/mde-offboard/internal/queue/natstest"
)

// TestStatusUnderTheLongestConnectTimeout: status may take four times
// --connect-timeout. A --connect-timeout past a quarter of the longest
// duration (2562047h, the largest flag.Duration takes) made that
// product wrap around to a negative limit, and status failed at once
// with "context deadline exceeded".
func TestStatusUnderTheLongestConnectTimeout(t *testing.T) {
	t.Parallel()
	nc, js := natstest.Connect(t)
	if _, err := queue.Ensure(t.Context(), js, queue.Settings{Tenants: []string{"contoso"}}); err != nil {
		t.Fatal(err)
	}
	for _, timeout := range []string{"700000h", "2562047h"} {
		var out, errb bytes.Buffer
		code := runContext(t.Context(), []string{"--nats-url", nc.ConnectedUrl(), "--connect-timeout", timeout, "status", "contoso"}, &out, &errb)
		if code != exitOK {
			t.Errorf("--connect-timeout %s: exit %d, stderr %q; want 0", timeout, code, errb.String())
		}
	}
}
