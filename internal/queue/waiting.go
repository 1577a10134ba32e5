package queue

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// Waiting reports how many requests wait for the consumer, not delivered
// yet, and when the oldest request it has not had answered was published
// (zero when none): one waiting, under way, or handed back for a
// redelivery later (another message of its id being called, say). It
// reads the consumer's info and, when some are not answered, the first of
// them above the ack floor from the stream: answered requests are removed
// as they are acked, so the first one left there is the oldest unanswered.
func Waiting(ctx context.Context, stream jetstream.Stream, cons jetstream.Consumer) (n uint64, oldest time.Time, err error) {
	info, err := cons.Info(ctx)
	if err != nil {
		return 0, time.Time{}, fmt.Errorf("consumer info: %w", err)
	}
	if info.NumPending == 0 && info.NumAckPending == 0 {
		return 0, time.Time{}, nil
	}
	msg, err := stream.GetMsg(ctx, info.AckFloor.Stream+1, jetstream.WithGetMsgSubject(info.Config.FilterSubject))
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return info.NumPending, time.Time{}, nil // answered meanwhile
	}
	if err != nil {
		return info.NumPending, time.Time{}, fmt.Errorf("oldest unanswered request: %w", err)
	}
	return info.NumPending, msg.Time, nil
}
