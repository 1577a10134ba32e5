package queue

import (
	"context"
	"errors"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// BucketCheck is how often a watch of a bucket checks that the bucket is
// still the one it started on, with every entry it holds (BucketReset).
const BucketCheck = time.Second

// BucketCreated is when the bucket's stream was made.
func BucketCreated(ctx context.Context, kv jetstream.KeyValue) (time.Time, error) {
	st, err := kv.Status(ctx)
	if err != nil {
		return time.Time{}, err
	}
	if s := bucketStream(st); s != nil {
		return s.Created, nil
	}
	return time.Time{}, nil
}

// BucketReset says whether the bucket was made again since created (zero:
// not known), or lost without a delete an entry of revision lowest or
// above, the lowest a watcher holds (0: none): its stream was purged. A
// bucket made again or purged sends its watchers nothing. A status that
// cannot be read says no: the watch goes on.
func BucketReset(ctx context.Context, kv jetstream.KeyValue, created time.Time, lowest uint64) bool {
	st, err := kv.Status(ctx)
	if err != nil {
		return false
	}
	s := bucketStream(st)
	if s == nil {
		return false
	}
	if !created.IsZero() && !s.Created.Equal(created) {
		return true
	}
	return lowest != 0 && s.State.FirstSeq > lowest
}

func bucketStream(s jetstream.KeyValueStatus) *jetstream.StreamInfo {
	if b, ok := s.(*jetstream.KeyValueBucketStatus); ok {
		return b.StreamInfo()
	}
	return nil
}

// ErrReconnected ends a watch of a bucket whose connection to NATS was
// made again since it started (ConnMark).
var ErrReconnected = errors.New("the connection to NATS was made again")

// ConnMark marks a connection's reconnections as a watch of a bucket
// starts. A lone server restarted comes back without the watch's
// consumer, which it kept in memory, and the client library makes it
// again only once it has missed two of its heartbeats (about ten
// seconds): meanwhile the watch brings nothing. A cluster's node lost
// drops what was sent to the watch while the connection moved. A watch
// whose mark Moved is made again, which reads every entry.
type ConnMark struct {
	nc *nats.Conn
	n  uint64
}

// MarkConn marks nc's reconnections now: take it before the watch is
// made, so that one in between is not missed.
func MarkConn(nc *nats.Conn) ConnMark { return ConnMark{nc: nc, n: nc.Stats().Reconnects} }

// Moved says whether the connection was made again since the mark.
func (m ConnMark) Moved() bool { return m.nc.Stats().Reconnects != m.n }

// errWatchEnded is a watch of a bucket that ended before it had read
// every entry.
var errWatchEnded = errors.New("watch ended")

// EachEntry calls fn with every entry the bucket holds now, in order (the
// latest of each key; delete markers too, unless opts leave them out), and
// returns once all are read.
func EachEntry(ctx context.Context, kv jetstream.KeyValue, fn func(jetstream.KeyValueEntry), opts ...jetstream.WatchOpt) error {
	w, err := kv.WatchAll(ctx, opts...)
	if err != nil {
		return err
	}
	defer func() { _ = w.Stop() }()
	for {
		select {
		case e, ok := <-w.Updates():
			if !ok {
				return errWatchEnded
			}
			if e == nil {
				return nil
			}
			fn(e)
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// FirstEntryAfter is the revision of the first entry of bucket's keys
// (KV key filters) after revision seen in stream, the bucket's: 0 when
// there is none, or when the server cannot answer now. A watch of those
// keys that has not brought it within a while has stalled: it is a
// consumer of one replica on one server, which may be lost while the
// client's own connection to another holds.
func FirstEntryAfter(ctx context.Context, stream jetstream.Stream, bucket string, seen uint64, keys ...string) uint64 {
	var first uint64
	for _, key := range keys {
		m, err := stream.GetMsg(ctx, seen+1, jetstream.WithGetMsgSubject("$KV."+bucket+"."+key))
		if err == nil && (first == 0 || m.Sequence < first) {
			first = m.Sequence
		}
	}
	return first
}
