package natstest

import (
	"sync"
	"testing"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nuid"
)

// Unanswered sends the first pulls of the consumers it wraps to a
// consumer that is gone: the server answers each at once "no responders",
// as a server of a cluster does for a moment to a pull of a consumer just
// made whose leader it has not learnt of yet. The answers are the
// server's own; only where the pull goes is chosen.
type Unanswered struct {
	gone jetstream.Consumer

	mu   sync.Mutex
	left int
	sent int
}

// NewUnanswered makes an Unanswered whose first n pulls, over every
// consumer it wraps, go unanswered; the gone consumer is one of stream's,
// made and deleted.
func NewUnanswered(tb testing.TB, js jetstream.JetStream, stream string, n int) *Unanswered {
	tb.Helper()
	name := "gone-" + nuid.Next()
	gone, err := js.CreateConsumer(tb.Context(), stream, jetstream.ConsumerConfig{Durable: name, AckPolicy: jetstream.AckNonePolicy})
	if err != nil {
		tb.Fatal(err)
	}
	if err := js.DeleteConsumer(tb.Context(), stream, name); err != nil {
		tb.Fatal(err)
	}
	return &Unanswered{gone: gone, left: n}
}

// Sent is how many pulls went unanswered.
func (u *Unanswered) Sent() int {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.sent
}

// Wrap is c with its pulls sent to the gone consumer while any of the n
// are left.
func (u *Unanswered) Wrap(c jetstream.Consumer) jetstream.Consumer {
	return &unansweredConsumer{Consumer: c, u: u}
}

// take says whether the next pull goes unanswered.
func (u *Unanswered) take() bool {
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.left == 0 {
		return false
	}
	u.left--
	u.sent++
	return true
}

type unansweredConsumer struct {
	jetstream.Consumer
	u *Unanswered
}

func (c *unansweredConsumer) Fetch(batch int, opts ...jetstream.FetchOpt) (jetstream.MessageBatch, error) {
	if c.u.take() {
		return c.u.gone.Fetch(batch, opts...)
	}
	return c.Consumer.Fetch(batch, opts...)
}

func (c *unansweredConsumer) FetchNoWait(batch int) (jetstream.MessageBatch, error) {
	if c.u.take() {
		return c.u.gone.FetchNoWait(batch)
	}
	return c.Consumer.FetchNoWait(batch)
}
