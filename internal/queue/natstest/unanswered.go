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

// Messages is c's Messages whose first pulls, while any of the n are
// left, go to the gone consumer: unanswered, the client hears nothing of
// them but that the server's beats stopped (jetstream.ErrNoHeartbeat), as
// it does of a pull a server of a cluster answered "no responders". The
// next message asked for comes from c.
func (c *unansweredConsumer) Messages(opts ...jetstream.PullMessagesOpt) (jetstream.MessagesContext, error) {
	if !c.u.take() {
		return c.Consumer.Messages(opts...)
	}
	gone, err := c.u.gone.Messages(opts...)
	if err != nil {
		return nil, err
	}
	return &unansweredMessages{MessagesContext: gone, cons: c, opts: opts}, nil
}

// unansweredMessages reads the gone consumer until its first error, then
// c.
type unansweredMessages struct {
	jetstream.MessagesContext
	cons *unansweredConsumer
	opts []jetstream.PullMessagesOpt
	gone bool // the gone consumer's error was handed over
}

func (m *unansweredMessages) Next(opts ...jetstream.NextOpt) (jetstream.Msg, error) {
	if m.gone {
		return m.MessagesContext.Next(opts...)
	}
	msg, err := m.MessagesContext.Next(opts...)
	if err == nil {
		return msg, nil
	}
	m.MessagesContext.Stop()
	real, rerr := m.cons.Messages(m.opts...)
	if rerr != nil {
		return nil, rerr
	}
	m.MessagesContext, m.gone = real, true
	return nil, err
}
