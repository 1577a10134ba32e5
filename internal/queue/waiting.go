package queue

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// Unanswered is what Waiting reads of a consumer's requests.
type Unanswered struct {
	Pending uint64    // waiting, not delivered yet
	Unacked uint64    // delivered and not acked: under way, or handed back for a redelivery later
	Oldest  time.Time // when the oldest of them was published; zero when none
}

// Waiting reports the requests the consumer has not had answered: those
// waiting, not delivered yet, those delivered and not acked (under way,
// or handed back for a redelivery later: another message of its id being
// called, a pause), and when the oldest of them was published. It reads
// the consumer's info and, when some are not answered, the oldest of
// them (OldestUnanswered).
func Waiting(ctx context.Context, stream jetstream.Stream, cons jetstream.Consumer) (Unanswered, error) {
	info, err := cons.Info(ctx)
	if err != nil {
		return Unanswered{}, fmt.Errorf("consumer info: %w", err)
	}
	u := Unanswered{Pending: info.NumPending, Unacked: uint64(max(info.NumAckPending, 0))} //nolint:gosec // not negative
	u.Oldest, err = OldestUnanswered(ctx, stream, info)
	return u, err
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
