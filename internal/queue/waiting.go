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
// reads the consumer's info and, when some are not answered, the oldest
// of them (OldestUnanswered).
func Waiting(ctx context.Context, stream jetstream.Stream, cons jetstream.Consumer) (n uint64, oldest time.Time, err error) {
	info, err := cons.Info(ctx)
	if err != nil {
		return 0, time.Time{}, fmt.Errorf("consumer info: %w", err)
	}
	oldest, err = OldestUnanswered(ctx, stream, info)
	return info.NumPending, oldest, err
}

// OldestUnanswered is when the oldest request that the consumer of info
// has not had answered was published (zero when none): the first above
// its ack floor, read from the stream, as answered requests are removed
// as they are acked.
func OldestUnanswered(ctx context.Context, stream jetstream.Stream, info *jetstream.ConsumerInfo) (time.Time, error) {
	if info.NumPending == 0 && info.NumAckPending == 0 {
		return time.Time{}, nil
	}
	msg, err := stream.GetMsg(ctx, info.AckFloor.Stream+1, jetstream.WithGetMsgSubject(info.Config.FilterSubject))
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return time.Time{}, nil // answered meanwhile
	}
	if err != nil {
		return time.Time{}, fmt.Errorf("oldest unanswered request: %w", err)
	}
	return msg.Time, nil
}
