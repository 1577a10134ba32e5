package queue

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Nak hands a delivered message back for redelivery after delay, and
// waits for the server to say it has it: a nak sent into a connection
// that is silently gone (a partition, a server host lost without a
// word) is lost with it, and the message would wait out its ack wait
// once NATS is back. An error says the nak may not have arrived: send it
// again (an Outage error) once NATS is back.
//
// No one answers a nak while its consumer has no leader: one gone (a
// lone server restarted, whose consumers were in memory), or one between
// leaders (a cluster). A consumer gone is no error: the consumer made
// again delivers the message anew. One that is still there is an Outage
// error: its next leader holds the delivery, and takes the nak sent again.
// A message with no reply subject (not delivered by a consumer) is
// handed to its own Nak.
func Nak(ctx context.Context, js jetstream.JetStream, msg jetstream.Msg, delay time.Duration) error {
	if msg.Reply() == "" {
		return msg.NakWithDelay(delay)
	}
	body := []byte("-NAK")
	if delay > 0 {
		body = fmt.Appendf(nil, `-NAK {"delay": %d}`, delay.Nanoseconds())
	}
	_, err := js.Conn().RequestWithContext(ctx, msg.Reply(), body)
	if errors.Is(err, nats.ErrNoResponders) {
		return consumerLeaderless(ctx, js, msg, "nak", err)
	}
	return err
}

// Ack acknowledges a delivered message and waits for the server to say
// it has it (DoubleAck). As with a nak, no one answers while its
// consumer has no leader. A consumer gone is ErrConsumerGone: nothing
// holds the delivery any more, and the ack sent again would wait for an
// answer that never comes (a lone server restarted while the worker
// stops: the stop makes no consumer again). One still there is an Outage
// error.
func Ack(ctx context.Context, js jetstream.JetStream, msg jetstream.Msg) error {
	err := msg.DoubleAck(ctx)
	if errors.Is(err, nats.ErrNoResponders) && msg.Reply() != "" {
		if err := consumerLeaderless(ctx, js, msg, "ack", err); err != nil {
			return err
		}
		return ErrConsumerGone
	}
	return err
}

// ErrConsumerGone says that an ack found its message's consumer gone: the
// ack is done with. The message's stream may be gone with it, or made
// again (a lone server back without its store, an operator's delete),
// and hold another message at the place the acked one had.
var ErrConsumerGone = errors.New("the message's consumer is gone")

// consumerLeaderless is the error of a nak or an ack (what) no one
// answered (err): nil when the message's consumer is gone, or cannot be
// looked up for good; err, an Outage, while it is still there or NATS is
// away.
func consumerLeaderless(ctx context.Context, js jetstream.JetStream, msg jetstream.Msg, what string, err error) error {
	meta, merr := msg.Metadata()
	if merr != nil {
		return nil //nolint:nilerr // no consumer named: nothing to wait for
	}
	_, ierr := js.Consumer(ctx, meta.Stream, meta.Consumer)
	switch {
	case ierr == nil:
		return fmt.Errorf("%s: consumer %s has no leader yet: %w", what, meta.Consumer, err)
	case Outage(ierr):
		return fmt.Errorf("%s: consumer %s: %w", what, meta.Consumer, ierr)
	default:
		return nil // gone, or not ours to look up: the nak is not held
	}
}

// NakInOrder hands delivered messages back for redelivery at once (a nak
// without delay), in their order, and waits until the server has taken
// each back: their consumer then hands them out again in that order,
// ahead of any message not delivered yet. Sent without waiting, a nak
// travels apart from the pull that follows it (the server takes acks and
// pulls on queues of their own), and that pull could get a later message
// first. The naks go out together and their answers are awaited together,
// one round trip for all. An error says some may not have arrived; they
// come back after their ack wait all the same.
func NakInOrder(ctx context.Context, js jetstream.JetStream, msgs []jetstream.Msg) error {
	if len(msgs) == 0 {
		return nil
	}
	nc := js.Conn()
	inbox := nc.NewInbox()
	answers := make(chan *nats.Msg, len(msgs))
	sub, err := nc.ChanSubscribe(inbox, answers)
	if err != nil {
		return fmt.Errorf("nak: %w", err)
	}
	defer func() { _ = sub.Unsubscribe() }()
	want := 0
	for _, m := range msgs {
		if m.Reply() == "" {
			if err := m.Nak(); err != nil {
				return err
			}
			continue
		}
		if err := nc.PublishMsg(&nats.Msg{Subject: m.Reply(), Reply: inbox, Data: []byte("-NAK")}); err != nil {
			return fmt.Errorf("nak: %w", err)
		}
		want++
	}
	for got := range want {
		select {
		case a := <-answers:
			if a.Header.Get("Status") == "503" {
				return fmt.Errorf("nak: %w", nats.ErrNoResponders)
			}
		case <-ctx.Done():
			return fmt.Errorf("nak: %d of %d not answered: %w", want-got, want, ctx.Err())
		}
	}
	return nil
}
