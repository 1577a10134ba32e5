package main

import (
	"context"
	"testing"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/contoso-secops/mde-offboard/internal/testwait"
)

// unansweredAck is a publish whose acknowledgement never comes: a server
// gone, the client waiting to reconnect.
type unansweredAck struct{}

func (unansweredAck) Ok() <-chan *jetstream.PubAck { return nil }
func (unansweredAck) Err() <-chan error            { return nil }
func (unansweredAck) Msg() *nats.Msg               { return nil }

// An interrupted run waits its one grace for all of the acknowledgements
// outstanding, not for the first alone: after the grace had run out for
// the first, each later one was awaited until its publish timed out (30 s
// each with a server gone), and then counted not published rather than
// sent unconfirmed.
func TestInterruptedRunGivesUpOnEveryUnansweredAck(t *testing.T) {
	t.Parallel()
	r := &campaignRun{}
	ctx, cancel := context.WithCancel(t.Context())
	cancel() // interrupted
	const pending = 3
	acks := make(chan pendingAck, pending)
	for n := range pending {
		acks <- pendingAck{row: n + 1, f: unansweredAck{}}
	}
	close(acks)
	done := make(chan struct{})
	go func() { defer close(done); r.collectAcks(ctx, acks) }()
	testwait.For(t, done, 4*ackGrace, "the acknowledgements given up after the grace")
	if n := r.unconfirmed.Load(); n != pending {
		t.Errorf("%d publishes counted sent unconfirmed, want %d", n, pending)
	}
}
