package queue

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/contoso-secops/mde-offboard/offboard"
)

// PublishedResult is the result stored in the results stream under
// msgID on subject (a tenant's results) at or after since, nil when there
// is none: a request delivered again whose ledger entry is gone (the
// bucket purged, the entry deleted or expired) learns so whether an
// earlier delivery answered it and was not acked. The last result on the
// subject is read first; the others are read by their headers alone, and
// only the one found whole. Each round trip has the bound of one step
// (StepCtx): a read the server does not answer (a user that may not read
// the stream, a stream with no leader) fails within it, and the request
// is not held for ctx's whole bound at each delivery.
func PublishedResult(ctx context.Context, js jetstream.JetStream, subject, msgID string, since time.Time) ([]byte, error) {
	sctx, cancel := StepCtx(ctx)
	results, err := js.Stream(sctx, offboard.StreamResults)
	cancel()
	if err != nil {
		return nil, fmt.Errorf("look for result %s: %w", msgID, err)
	}
	sctx, cancel = StepCtx(ctx)
	last, err := results.GetLastMsgForSubject(sctx, subject)
	cancel()
	switch {
	case errors.Is(err, jetstream.ErrMsgNotFound):
		return nil, nil
	case err != nil:
		return nil, fmt.Errorf("look for result %s: %w", msgID, err)
	case last.Time.Before(since):
		return nil, nil
	case last.Header.Get(jetstream.MsgIDHeader) == msgID:
		return last.Data, nil
	}
	found, err := seqOfMsgID(ctx, results, subject, msgID, since)
	if err != nil || found == 0 {
		return nil, err
	}
	sctx, cancel = StepCtx(ctx)
	defer cancel()
	m, err := results.GetMsg(sctx, found)
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return nil, nil // gone meanwhile (its max age)
	}
	if err != nil {
		return nil, fmt.Errorf("look for result %s: %w", msgID, err)
	}
	return m.Data, nil
}

// seqOfMsgID is the stream sequence of the last message of results on
// subject stored at or after since under msgID, 0 when there is none. It
// reads the messages' headers alone.
func seqOfMsgID(ctx context.Context, results jetstream.Stream, subject, msgID string, since time.Time) (uint64, error) {
	// A consumer of its own, not an ordered one: it says at once how many
	// results it will read, and each fetch asks for no more than that, so
	// none waits out its time for results that are not coming.
	cctx, cancel := StepCtx(ctx)
	defer cancel()
	cons, err := results.CreateConsumer(cctx, jetstream.ConsumerConfig{
		FilterSubject:     subject,
		DeliverPolicy:     jetstream.DeliverByStartTimePolicy,
		OptStartTime:      &since,
		AckPolicy:         jetstream.AckNonePolicy,
		HeadersOnly:       true,
		MemoryStorage:     true,
		Replicas:          1,
		InactiveThreshold: time.Minute,
	})
	if err != nil {
		return 0, fmt.Errorf("look for result %s: %w", msgID, err)
	}
	defer func() {
		dctx, cancel := StepCtx(context.WithoutCancel(ctx))
		defer cancel()
		_ = results.DeleteConsumer(dctx, cons.CachedInfo().Name) // else gone once inactive
	}()
	var (
		found        uint64
		noResponders NoResponders
	)
	for pending := cons.CachedInfo().NumPending; pending > 0; {
		batch, err := cons.Fetch(int(min(pending, 512)), jetstream.FetchMaxWait(StepTimeout)) //nolint:gosec // at most 512
		if err != nil {
			return 0, fmt.Errorf("look for result %s: %w", msgID, err)
		}
		n := uint64(0)
		for m := range batch.Messages() {
			n++
			if m.Headers().Get(jetstream.MsgIDHeader) != msgID {
				continue
			}
			meta, err := m.Metadata()
			if err != nil {
				return 0, fmt.Errorf("look for result %s: %w", msgID, err)
			}
			found = meta.Sequence.Stream
		}
		if err := batch.Error(); err != nil && !errors.Is(err, nats.ErrTimeout) {
			if n == 0 && noResponders.Again(ctx, err) {
				continue
			}
			return 0, fmt.Errorf("look for result %s: %w", msgID, err)
		}
		if n == 0 {
			break // the rest went meanwhile (their max age)
		}
		noResponders.Answered()
		pending -= min(n, pending)
	}
	return found, nil
}
