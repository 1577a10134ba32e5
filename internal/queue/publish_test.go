package queue

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/contoso-secops/mde-offboard/internal/queue/natstest"
)

// TestWaitStoredGivesUpOnAnAnswerThatNeverComes: a store whose answer never
// comes (a publish that reached a stream leader just lost) fails after
// StepTimeout as an outage, even under a longer deadline, so its request
// is taken again soon.
func TestWaitStoredGivesUpOnAnAnswerThatNeverComes(t *testing.T) {
	t.Parallel()
	never := func(ctx context.Context) error {
		<-ctx.Done()
		return ctx.Err()
	}
	answered := func(context.Context) error { return nil }
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- WaitStored(ctx, answered, never) }()
	select {
	case err := <-done:
		if !errors.Is(err, context.DeadlineExceeded) || !Outage(err) {
			t.Errorf("WaitStored: %v, want a deadline counted as an outage", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("WaitStored still waiting after 20s for an answer that never comes (its caller's deadline is a minute)")
	}
}

// TestSendableHeaderNameAgreesWithTheClient: the names sendableHeaderName
// lets through are those the NATS client sends, and no other: a dead
// letter carries a request's headers as they came, and one whose name the
// client refuses could never be stored.
func TestSendableHeaderNameAgreesWithTheClient(t *testing.T) {
	t.Parallel()
	nc, _ := natstest.Connect(t)
	names := []string{"X-Ref-Id", "Nats-Msg-Id", "a", "~!#$%&'*+-.^_`|", "X-Ref(id)", "X Ref", "X:Ref", "X/Ref", "X;Ref", "X\"Ref",
		"X<Ref>", "X=Ref", "X?Ref", "X@Ref", "X[Ref]", "X\\Ref", "X{Ref}", "X,Ref", "Ré", "X\tRef", "X\x7fRef"}
	for _, name := range names {
		m := nats.NewMsg("sendable.test")
		m.Header[name] = []string{"v"}
		sent := nc.PublishMsg(m) == nil
		if got := sendableHeaderName(name); got != sent {
			t.Errorf("sendableHeaderName(%q) = %t, but the client sends it: %t", name, got, sent)
		}
	}
}
