package queue

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/contoso-secops/mde-offboard/offboard"
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

// ErrNotSweepable says a consumer's acks do not tell which requests are
// answered: it is not as the worker makes it (every request, explicit
// acks, no delivery limit, the expected subject). Someone changed it.
var ErrNotSweepable = errors.New("consumer is not as the worker makes it: its ack floor does not tell which requests are answered; not swept")

// sweepable says whether every request at or below the consumer's ack
// floor was delivered to it and acked by it.
func sweepable(cfg jetstream.ConsumerConfig) bool {
	return cfg.DeliverPolicy == jetstream.DeliverAllPolicy && cfg.AckPolicy == jetstream.AckExplicitPolicy && cfg.MaxDeliver <= 0
}

// Sweep removes from the request stream the requests on subject that
// cons, a tenant's consumer, has acked but that are still there: a worker
// that stopped between a request's ack and its delete, a delete that
// failed, or a replica of an earlier release (interest retention, no
// delete). A tenant's consumer acks a request only once its result is
// stored, so every request of its subject at or below its ack floor is
// answered. It returns the sequence of the last request it removed (0:
// none), also with an error that stopped it midway, and whether it
// stopped at sweepMax with more answered requests left: sweep again soon.
func Sweep(ctx context.Context, requests jetstream.Stream, cons jetstream.Consumer, subject string) (last uint64, more bool, err error) {
	info, err := cons.Info(ctx)
	if err != nil {
		return 0, false, err
	}
	if !sweepable(info.Config) || info.Config.FilterSubject != subject || len(info.Config.FilterSubjects) > 0 {
		return 0, false, fmt.Errorf("%s: %w", info.Name, ErrNotSweepable)
	}
	return removeBelow(ctx, requests, subject, info.AckFloor.Stream, info.TimeStamp)
}

// SweepUnrouted removes from the request stream the requests that the
// unrouted consumer answered but that are still there (its delete was
// lost), on subjects that no tenant's consumer can hold: of no contract
// form, or whose tenant token is no tenant name. The unrouted consumer
// never lets such a request go. The rest it may have let go to their
// tenant's consumer, which a lone server's restart loses (its state is in
// memory): whether such a request was answered cannot be told from the
// floor, so those are left to Restore, which makes the tenant's consumers
// again and answers them once (orphans). It returns the subjects it
// removed requests from, also with an error that stopped it midway, and
// whether it stopped at sweepMax on one of them with more answered
// requests left: sweep again soon.
func SweepUnrouted(ctx context.Context, requests jetstream.Stream, unrouted jetstream.Consumer, subjects offboard.Subjects) (swept []string, more bool, err error) {
	info, err := unrouted.Info(ctx)
	if err != nil {
		return nil, false, err
	}
	if !sweepable(info.Config) {
		return nil, false, fmt.Errorf("%s: %w", info.Name, ErrNotSweepable)
	}
	floor, asOf := info.AckFloor.Stream, info.TimeStamp
	if floor == 0 {
		return nil, false, nil
	}
	state, err := requests.Info(ctx, jetstream.WithSubjectFilter(subjects.AllRequests()))
	if err != nil {
		return nil, false, err
	}
	for subject := range state.State.Subjects {
		if _, _, ok := tenantSubject(subjects, subject); ok {
			continue
		}
		if !literal(subject) {
			// A request published on mde.offboard.request.* (a server
			// not in pedantic mode stores it): as a filter, its
			// subject would match every tenant's requests. Left alone;
			// the unrouted consumer deletes it once answered.
			continue
		}
		removed, left, err := removeBelow(ctx, requests, subject, floor, asOf)
		if removed > 0 {
			swept = append(swept, subject)
		}
		if err != nil {
			slices.Sort(swept)
			return swept, more, err
		}
		more = more || left
	}
	slices.Sort(swept)
	return swept, more, nil
}

// literal says whether subject has no wildcard token: as a filter, it
// matches itself only.
func literal(subject string) bool {
	for token := range strings.SplitSeq(subject, ".") {
		if token == "*" || token == ">" {
			return false
		}
	}
	return true
}

// removeBelow removes the requests on subject at or below floor, read
// from a consumer at asOf (its info's time), sweepMax at most. It returns
// the sequence of the last one removed (0: none), also with an error, and
// whether more are left at or below floor once it removed sweepMax: a
// sweep again soon goes on.
//
// A request stored after asOf was not acked when the floor was read: the
// stream was made again since (a lone server back without its store, an
// operator's delete), and holds another request at that place, not
// answered yet. It and those after it are left alone. A server's clock
// ahead of the consumer's leader's leaves a request just answered for the
// next sweep; a server that does not say when (zero asOf) is not asked.
//
// It deletes them one at a time, not with a purge: a purge has the server
// drop, from each consumer of the subject, every request queued for
// redelivery below its next new one (nats-server's consumer.purge), so
// requests handed back at once (a pause, a cancel's pass) came again only
// after their ack wait, behind requests published later. A delete of a
// request acked touches no consumer's state. Most sweeps find nothing:
// one look at the subject's first request.
func removeBelow(ctx context.Context, requests jetstream.Stream, subject string, floor uint64, asOf time.Time) (last uint64, more bool, err error) {
	for seq, n := uint64(1), 0; seq <= floor; n++ {
		m, err := requests.GetMsg(ctx, seq, jetstream.WithGetMsgSubject(subject))
		switch {
		case errors.Is(err, jetstream.ErrMsgNotFound):
			return last, false, nil
		case err != nil:
			return last, false, err
		case m.Sequence > floor, !asOf.IsZero() && m.Time.After(asOf):
			return last, false, nil
		case n == sweepMax:
			return last, true, nil
		}
		if err := Retire(ctx, requests, m.Sequence); err != nil {
			return last, false, fmt.Errorf("remove request %d of %s: %w", m.Sequence, subject, err)
		}
		last, seq = m.Sequence, m.Sequence+1
	}
	return last, false, nil
}

// sweepMax bounds the requests one sweep removes from a subject, two
// round trips each, well within the sweep's 5 s on a cluster. Few are
// usually left (one per request under way when a worker stopped); a
// replica of an earlier release leaves every request it answers, and the
// stats loop sweeps again at its next pass while more are left.
const sweepMax = 200
