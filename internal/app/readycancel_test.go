package app

import (
	"context"
	"testing"
)

// TestReadyKeepsNoAnswerOfACallerThatLeft: a caller of /readyz that hangs
// up during the check (a client with a short timeout) ends the check
// with its context; that says nothing about NATS or the streams, so the
// next probe is answered afresh. Before, "context canceled" was kept as
// the answer for the next 5 s: a kubelet's probe meanwhile was answered
// 503, and with NATS slow, the last good answer was no longer kept.
func TestReadyKeepsNoAnswerOfACallerThatLeft(t *testing.T) {
	t.Parallel()
	e := setup(t, envConfig{tenants: []string{"contoso"}})
	gone, cancel := context.WithCancel(t.Context())
	cancel()
	_ = e.app.Ready(gone)
	// At once: an answer is kept for 5 s.
	if err := e.app.Ready(t.Context()); err != nil {
		t.Errorf("not ready after a caller that left: %v", err)
	}
}
