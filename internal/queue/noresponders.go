package queue

import (
	"context"
	"errors"
	"time"

	"github.com/nats-io/nats.go"
)

// NoResponders paces the pulls sent again to a consumer just made when the
// server answers one "no responders". On a cluster a consumer's pulls are
// answered by the server that leads it, and the server the client is
// connected to learns that it does so on its own time: a pull sent at
// once may find no one to answer it though the consumer is there. Seen
// on a freshly made three-server cluster, where a campaign run's read of
// the request stream ended "no responders" before publishing any row.
// The zero value is ready; one reader uses it.
type NoResponders struct{ tries int }

// noRespondersTries bounds the pulls sent again in a row: 10 ms,
// doubling, about 1.3 s in all, well past the time a server takes to
// learn of a consumer, and short enough that the read of a consumer
// really gone still fails within a second or two.
const noRespondersTries = 7

// Again says whether a pull that handed over nothing and ended with err
// is sent again: err is "no responders" and tries are left. It waits
// first; false when ctx ends meanwhile.
func (u *NoResponders) Again(ctx context.Context, err error) bool {
	if !errors.Is(err, nats.ErrNoResponders) || u.tries >= noRespondersTries {
		return false
	}
	t := time.NewTimer(10 * time.Millisecond << u.tries)
	defer t.Stop()
	u.tries++
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// Answered counts the tries from nought again: a pull was answered, and
// the next consumer made may again be unknown for a moment.
func (u *NoResponders) Answered() { u.tries = 0 }
