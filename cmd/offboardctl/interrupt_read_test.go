package main

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/nats-io/nats.go"

	"github.com/contoso-secops/mde-offboard/internal/queue"
	"github.com/contoso-secops/mde-offboard/internal/queue/natstest"
)

// TestInterruptedReadSaysSo: campaign status and dead retry interrupted
// (Ctrl-C) while they read a stream said "offboardctl: context
// canceled", which named neither the interrupt nor what was cut short.
func TestInterruptedReadSaysSo(t *testing.T) {
	t.Parallel()
	nc, js := natstest.Connect(t)
	if _, err := queue.Ensure(t.Context(), js, queue.Settings{Tenants: []string{"contoso"}}); err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{
		{"campaign", "status", "--tenant", "contoso", "--name", "wave"},
		{"dead", "retry", "contoso", "--all"},
	} {
		ctx, interrupt := context.WithCancelCause(t.Context())
		// The interrupt lands as the command starts reading a stream.
		sub, err := nc.Subscribe("$JS.API.CONSUMER.CREATE.>", func(*nats.Msg) {
			interrupt(errors.New("interrupt signal received"))
		})
		if err != nil {
			t.Fatal(err)
		}
		if err := nc.Flush(); err != nil {
			t.Fatal(err)
		}
		var stdout, stderr bytes.Buffer
		code := runContext(ctx, append([]string{"--nats-url", nc.ConnectedUrl()}, args...), &stdout, &stderr)
		_ = sub.Unsubscribe()
		interrupt(nil)
		errs := stderr.String()
		if code != exitFailed || !strings.Contains(errs, "interrupt signal received") || strings.Count(errs, "\n") != 1 {
			t.Errorf("%s: exit %d, stderr %q; want 1 and one line naming the interrupt", strings.Join(args[:2], " "), code, errs)
		}
	}
}
