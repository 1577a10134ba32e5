package worker

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/zap"

	"github.com/contoso-secops/mde-offboard/internal/queue"
	"github.com/contoso-secops/mde-offboard/offboard"
)

// streamEpoch is the epoch of the request stream (offboard.Seq): the
// creation time of the stream of that name, and until when, by the
// server's clock, that stream was seen to be the one there is.
type streamEpoch struct {
	mu      sync.Mutex
	created time.Time
	seen    time.Time
	// prev is the creation time of the stream seen before this one (zero:
	// none): a request it delivered may be answered after it was made
	// again.
	prev time.Time
}

// epochOf is the epoch of the request stream that stored msg. An operator
// may delete the stream and make it again while the worker runs (or a
// replica that starts makes it again), and the running worker then pulls
// from the consumers made again, of a stream whose sequences start again
// at 1: under the epoch read at start, a request of the new stream would
// be answered under the message ids of the old stream's request of its
// sequence, and the results and dead-letter streams would drop the answer
// and the copy as repeats. The stream is looked up again for a request
// stored after it was last seen.
func (w *Worker) epochOf(ctx context.Context, msg jetstream.Msg) (int64, error) {
	var stored time.Time
	if meta, err := msg.Metadata(); err == nil {
		stored = meta.Timestamp
	}
	e := &w.epoch
	e.mu.Lock()
	defer e.mu.Unlock()
	switch {
	case stored.IsZero():
		return e.created.UnixNano(), nil
	case stored.Before(e.created) && !e.prev.IsZero():
		return e.prev.UnixNano(), nil
	case stored.Before(e.created), stored.Before(e.seen):
		return e.created.UnixNano(), nil
	}
	sctx, cancel := queue.StepCtx(ctx)
	defer cancel()
	info, err := w.requests.Info(sctx)
	if err != nil {
		return 0, fmt.Errorf("look up stream %s for its creation time: %w", offboard.StreamRequests, err)
	}
	if stored.Before(info.Created) {
		// Stored in a stream deleted since: the one seen last.
		return e.created.UnixNano(), nil
	}
	if !info.Created.Equal(e.created) {
		w.log.Warn("the request stream was made again: answers that go by a request's place in the stream name the new one",
			zap.Time("created", info.Created), zap.Time("was_created", e.created))
		e.prev = e.created
	}
	e.created, e.seen = info.Created, info.TimeStamp
	return e.created.UnixNano(), nil
}
