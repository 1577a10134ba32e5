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
// A server that has no consumer for the message any more (a lone server
// restarted, whose consumers were in memory) answers no one; the
// consumer made again delivers the message anew, so that is no error.
// A message with no reply subject (not delivered by a consumer) is
// handed to its own Nak.
func Nak(ctx context.Context, nc *nats.Conn, msg jetstream.Msg, delay time.Duration) error {
	if msg.Reply() == "" {
		return msg.NakWithDelay(delay)
	}
	body := []byte("-NAK")
	if delay > 0 {
		body = fmt.Appendf(nil, `-NAK {"delay": %d}`, delay.Nanoseconds())
	}
	_, err := nc.RequestWithContext(ctx, msg.Reply(), body)
	if errors.Is(err, nats.ErrNoResponders) {
		return nil
	}
	return err
}
