package queue

import (
	"context"
	"errors"
	"fmt"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// StatusLookalike says whether a message looks like a status message of
// the server to the Go client's JetStream pulls (jetstream's checkMsg): no
// body and a Status header. A request published so never reaches the
// worker: the pull drops it (100), ends as if nothing were left (404,
// 408), or fails ("nats: consumer deleted" for a 409), and the requests
// delivered after it in the same pull wait out their ack wait. Unacked,
// it is delivered again every ack wait, for good. Reading the stream does
// not go through that check.
func StatusLookalike(data []byte, h nats.Header) bool {
	return len(data) == 0 && h.Get("Status") != ""
}

// Lookalikes returns the status lookalikes (StatusLookalike) on subject
// that cons was delivered and has not acked, read from the request stream
// from the consumer's ack floor up to the last request delivered to it.
// It reads at most reads messages (those above the floor that are still
// in the stream), and none when the consumer has nothing unacked.
func Lookalikes(ctx context.Context, requests jetstream.Stream, cons jetstream.Consumer, subject string, reads int) ([]*jetstream.RawStreamMsg, error) {
	info, err := cons.Info(ctx)
	if err != nil {
		return nil, err
	}
	if info.NumAckPending == 0 {
		return nil, nil
	}
	var found []*jetstream.RawStreamMsg
	next, last := info.AckFloor.Stream+1, info.Delivered.Stream
	for range reads {
		if next > last {
			break
		}
		m, err := requests.GetMsg(ctx, next, jetstream.WithGetMsgSubject(subject))
		switch {
		case errors.Is(err, jetstream.ErrMsgNotFound):
			return found, nil
		case err != nil:
			return found, err
		case m.Sequence > last:
			return found, nil
		}
		if StatusLookalike(m.Data, m.Header) {
			found = append(found, m)
		}
		next = m.Sequence + 1
	}
	return found, nil
}

// msgSizeHeader is the header a consumer that delivers headers only puts
// in place of a message's body: the size of the body left out.
const msgSizeHeader = "Nats-Msg-Size"

// Whole is msg as the stream stored it, when its consumer delivered its
// headers only (headers_only, set on the consumer by hand: nats consumer
// edit): read as it came, a request has no body, and was answered
// invalid_request, its dead letter empty, and deleted, its content lost.
// The stored message is read by its place in the stream; any other msg is
// returned as it is. An error (NATS away) says the request cannot be read
// now: it is taken again later.
func Whole(ctx context.Context, js jetstream.JetStream, msg jetstream.Msg) (jetstream.Msg, error) {
	if len(msg.Data()) > 0 || msg.Headers().Get(msgSizeHeader) == "" {
		return msg, nil
	}
	meta, err := msg.Metadata()
	if err != nil {
		return msg, nil //nolint:nilerr // not delivered by a consumer: nothing to read it from
	}
	ctx, cancel := StepCtx(ctx)
	defer cancel()
	stream, err := js.Stream(ctx, meta.Stream)
	if err != nil {
		return nil, fmt.Errorf("read request %d whose consumer delivered its headers only: %w", meta.Sequence.Stream, err)
	}
	stored, err := stream.GetMsg(ctx, meta.Sequence.Stream)
	if err != nil {
		return nil, fmt.Errorf("read request %d whose consumer delivered its headers only: %w", meta.Sequence.Stream, err)
	}
	// A stream deleted and made again since the delivery holds another
	// message at its place: not this one's body.
	if !stored.Time.Equal(meta.Timestamp) || stored.Subject != msg.Subject() {
		return nil, fmt.Errorf("read request %d whose consumer delivered its headers only: the stream holds another message there (made again since)", meta.Sequence.Stream)
	}
	return wholeMsg{Msg: msg, stored: stored}, nil
}

// wholeMsg is a delivery with the body and headers its stream stored.
type wholeMsg struct {
	jetstream.Msg
	stored *jetstream.RawStreamMsg
}

func (m wholeMsg) Data() []byte         { return m.stored.Data }
func (m wholeMsg) Headers() nats.Header { return m.stored.Header }
