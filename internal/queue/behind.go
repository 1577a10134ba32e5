package queue

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/contoso-secops/mde-offboard/offboard"
)

// behindBatch is how many requests one pull of ReadUndelivered asks for.
const behindBatch = 500

// ReadUndelivered reads the requests cons has not delivered yet, as the
// request stream stores them, in their order, and hands each to each:
// those waiting behind the ones it delivered, however many. It reads
// through a consumer of its own, made for the read and deleted after it
// (no acks: it takes nothing from cons, and counts nothing against its
// cap on requests delivered and not acked), one pull per behindBatch
// requests, up to the last request stored when the read began. It
// returns how many it read.
func ReadUndelivered(ctx context.Context, requests jetstream.Stream, cons jetstream.Consumer, each func(*jetstream.RawStreamMsg)) (int, error) {
	sctx, cancel := StepCtx(ctx)
	defer cancel()
	info, err := cons.Info(sctx)
	if err != nil {
		return 0, err
	}
	if info.NumPending == 0 {
		return 0, nil
	}
	sinfo, err := requests.Info(sctx)
	if err != nil {
		return 0, err
	}
	reader, filter, err := makeReader(sctx, requests, info)
	if err != nil {
		return 0, err
	}
	name := reader.CachedInfo().Name
	defer func() {
		dctx, cancel := StepCtx(context.WithoutCancel(ctx))
		defer cancel()
		_ = requests.DeleteConsumer(dctx, name) // else removed once inactive
	}()
	return readUpTo(ctx, reader, filter, sinfo.State.LastSeq, each)
}

// makeReader makes the consumer ReadUndelivered reads through: the lane
// of the consumer described by info, from past what it delivered. It
// returns the lane's subjects too, to name in errors.
func makeReader(ctx context.Context, requests jetstream.Stream, info *jetstream.ConsumerInfo) (jetstream.Consumer, string, error) {
	// The lane as the consumer has it: one defined by hand (--no-setup)
	// may give its subject as a list of one (filter_subjects), and its
	// filter_subject is then empty, which would read the whole stream,
	// every tenant's requests.
	filter, filters := info.Config.FilterSubject, info.Config.FilterSubjects
	if filter == "" && len(filters) == 0 {
		return nil, "", fmt.Errorf("consumer %s takes every subject of the stream: no lane of a tenant to read", info.Name)
	}
	if filter == "" {
		filter = strings.Join(filters, ",") // named in errors
	} else {
		filters = nil
	}
	reader, err := requests.CreateConsumer(ctx, jetstream.ConsumerConfig{
		Description:    "reads the requests waiting behind those " + info.Name + " delivered, for a campaign's cancel",
		FilterSubject:  info.Config.FilterSubject,
		FilterSubjects: filters,
		DeliverPolicy:  jetstream.DeliverByStartSequencePolicy,
		OptStartSeq:    info.Delivered.Stream + 1,
		AckPolicy:      jetstream.AckNonePolicy,
		MaxDeliver:     1,
		MemoryStorage:  true,
		// Left by a reader that died: the server removes it.
		InactiveThreshold: time.Minute,
		Replicas:          1,
	})
	if err != nil {
		return nil, "", fmt.Errorf("make a reader of %s: %w", filter, err)
	}
	return reader, filter, nil
}

// readUpTo pulls reader's requests, behindBatch at a time, and hands
// each stored up to the sequence last to each. It returns how many.
func readUpTo(ctx context.Context, reader jetstream.Consumer, filter string, last uint64, each func(*jetstream.RawStreamMsg)) (int, error) {
	read := 0
	var noResponders NoResponders
	for {
		if err := ctx.Err(); err != nil {
			return read, err
		}
		batch, err := reader.FetchNoWait(behindBatch)
		if err != nil {
			return read, fmt.Errorf("read the requests of %s: %w", filter, err)
		}
		got, done := 0, false
		for m := range batch.Messages() {
			got++
			meta, err := m.Metadata()
			if err != nil || done {
				continue
			}
			if meta.Sequence.Stream > last {
				done = true // stored after the read began
				continue
			}
			each(&jetstream.RawStreamMsg{Subject: m.Subject(), Sequence: meta.Sequence.Stream, Header: m.Headers(), Data: m.Data(), Time: meta.Timestamp})
			read++
			if meta.NumPending == 0 || meta.Sequence.Stream == last {
				done = true
			}
		}
		if err := batch.Error(); err != nil {
			if got == 0 && noResponders.Again(ctx, err) {
				continue
			}
			return read, fmt.Errorf("read the requests of %s: %w", filter, err)
		}
		if done || got == 0 {
			return read, nil
		}
		noResponders.Answered()
	}
}

// ReadRefused turns err, a failure of ReadUndelivered that reads as an
// outage (a request with no answer), into a refusal when NATS refused
// nc's user the consumer API on the request stream during the read: a
// user narrowed for --no-setup to no consumer create there. NATS answers
// such a request with nothing but an error on the connection, and the
// read, made again, would be refused again for as long as the user stays
// so. before is nc's last error as the read began: the connection keeps
// its last error until it reconnects, and a refusal already there then
// (an earlier read's, before the user was granted the API) is none of
// this read's, whose failure is then the outage it reads as. The refusal
// is no outage (Outage); any other err is returned as it is.
func ReadRefused(nc *nats.Conn, before, err error) error {
	if nc == nil || !Outage(err) {
		return err
	}
	last := nc.LastError()
	if !errors.Is(last, nats.ErrPermissionViolation) || !strings.Contains(last.Error(), `"$JS.API.CONSUMER.`) ||
		!strings.Contains(last.Error(), "."+offboard.StreamRequests) {
		return err
	}
	if before != nil && errors.Is(last, before) {
		return err // refused before the read began
	}
	// The outage is named, not wrapped: the refusal is none.
	return fmt.Errorf("NATS refused the user the consumer API on %s, which the read needs ($JS.API.CONSUMER.CREATE, .MSG.NEXT and .DELETE): %w; %v",
		offboard.StreamRequests, last, err) //nolint:errorlint // see above
}
