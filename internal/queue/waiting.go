package queue

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// Waiting reports how many requests wait for the consumer, not delivered
// yet, and when the oldest of them was published (zero when none waits).
// It reads the consumer's info and, when some wait, the first of them from
// the stream.
func Waiting(ctx context.Context, stream jetstream.Stream, cons jetstream.Consumer) (n uint64, oldest time.Time, err error) {
	info, err := cons.Info(ctx)
	if err != nil {
		return 0, time.Time{}, fmt.Errorf("consumer info: %w", err)
	}
	if info.NumPending == 0 {
		return 0, time.Time{}, nil
	}
	msg, err := stream.GetMsg(ctx, info.Delivered.Stream+1, jetstream.WithGetMsgSubject(info.Config.FilterSubject))
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return info.NumPending, time.Time{}, nil // taken meanwhile
	}
	if err != nil {
		return info.NumPending, time.Time{}, fmt.Errorf("first waiting request: %w", err)
	}
	return info.NumPending, msg.Time, nil
}
