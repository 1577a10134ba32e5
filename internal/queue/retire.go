package queue

import (
	"context"
	"errors"
	"fmt"

	"github.com/nats-io/nats.go/jetstream"
)

// Retire deletes an answered request from the request stream: under its
// limits retention nothing else removes it. A request already gone (a
// delete whose answer was lost, sent again) is not an error.
func Retire(ctx context.Context, requests jetstream.Stream, seq uint64) error {
	if seq == 0 {
		return nil
	}
	err := requests.DeleteMsg(ctx, seq)
	if err == nil || Outage(err) {
		return err
	}
	// The client says only that the delete failed: ask whether the
	// request is still there. A delete sent again after one whose answer
	// was lost fails so; its wait may have used up ctx's time.
	gctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), StepTimeout)
	defer cancel()
	_, gerr := requests.GetMsg(gctx, seq)
	switch {
	case errors.Is(gerr, jetstream.ErrMsgNotFound):
		return nil
	case Outage(gerr):
		return gerr // not known yet: ask again
	}
	return fmt.Errorf("delete request %d: %w", seq, err)
}

// Sweep removes from the request stream the requests of cons's subject
// that cons has acked but that are still there: a worker that stopped
// between a request's ack and its delete, a delete that failed, or a
// replica of an earlier release (interest retention, no delete). cons
// acks a request only once its result is stored, so every request of its
// subject at or below its ack floor is answered. It returns the ack floor
// when it removed requests, 0 when there were none.
func Sweep(ctx context.Context, requests jetstream.Stream, cons jetstream.Consumer) (uint64, error) {
	info, err := cons.Info(ctx)
	if err != nil {
		return 0, err
	}
	subject, floor := info.Config.FilterSubject, info.AckFloor.Stream
	if subject == "" || floor == 0 {
		return 0, nil
	}
	// Most sweeps find nothing: one look at the subject's first request
	// spares the purge.
	first, err := requests.GetMsg(ctx, 1, jetstream.WithGetMsgSubject(subject))
	switch {
	case errors.Is(err, jetstream.ErrMsgNotFound):
		return 0, nil
	case err != nil:
		return 0, err
	case first.Sequence > floor:
		return 0, nil
	}
	if err := requests.Purge(ctx, jetstream.WithPurgeSubject(subject), jetstream.WithPurgeSequence(floor+1)); err != nil {
		return 0, fmt.Errorf("purge %s below %d: %w", subject, floor+1, err)
	}
	return floor, nil
}
