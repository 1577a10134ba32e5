package campaign

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/contoso-secops/mde-offboard/internal/queue"
	"github.com/contoso-secops/mde-offboard/internal/queue/natstest"
	"github.com/contoso-secops/mde-offboard/offboard"
)

// TestSetMarkKeepsTheFirstCancel: of operators cancelling a campaign at
// once, over no mark or over one written by hand without the cancel, one
// writes the mark and every other is told it was cancelled already; no
// one fails, and the first mark's time stays.
func TestSetMarkKeepsTheFirstCancel(t *testing.T) {
	t.Parallel()
	_, js := natstest.Connect(t)
	kv, err := ControlBucket(t.Context(), js)
	if err != nil {
		t.Fatal(err)
	}
	if err := SetMark(t.Context(), kv, "contoso", "by-hand", Mark{}); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"none", "by-hand"} {
		var (
			wg             sync.WaitGroup
			mu             sync.Mutex
			written, again int
		)
		for i := range 12 {
			wg.Go(func() {
				err := SetMark(t.Context(), kv, "contoso", name, Mark{Cancelled: true, By: "op", At: time.Unix(int64(i), 0)})
				mu.Lock()
				defer mu.Unlock()
				switch {
				case err == nil:
					written++
				case errors.Is(err, ErrCancelledAlready):
					again++
				default:
					t.Errorf("%s: %v", name, err)
				}
			})
		}
		wg.Wait()
		if written != 1 || again != 11 {
			t.Errorf("%s: %d wrote the mark and %d were told it was cancelled already, want 1 and 11", name, written, again)
		}
		first, err := GetMark(t.Context(), kv, "contoso", name)
		if err != nil || first == nil || !first.Cancelled {
			t.Fatalf("%s: mark %+v, %v", name, first, err)
		}
		if err := SetMark(t.Context(), kv, "contoso", name, Mark{Cancelled: true, By: "late", At: time.Now()}); !errors.Is(err, ErrCancelledAlready) {
			t.Errorf("%s: a later cancel: %v, want cancelled already", name, err)
		}
		if now, _ := GetMark(t.Context(), kv, "contoso", name); now == nil || !now.At.Equal(first.At) || now.By != "op" {
			t.Errorf("%s: mark %+v after a later cancel, want the first's %+v", name, now, first)
		}
	}
}

// runWatcher starts a watcher of the marks and runs it until the test
// ends.
func runWatcher(t *testing.T, js jetstream.JetStream) *Watcher {
	t.Helper()
	w, err := NewWatcher(t.Context(), js, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { w.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	return w
}

// cancelledWithin says whether the watcher takes a request of campaign
// name as cancelled within d.
func cancelledWithin(w *Watcher, name string, d time.Duration) bool {
	r := offboard.Request{RequestID: "chg-1", Source: Source(name)}
	deadline := time.Now().Add(d)
	for {
		if _, ok := w.Cancelled("contoso", r, time.Time{}); ok || time.Now().After(deadline) {
			return ok
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestWatcherFollowsABucketMadeAgain: the control bucket deleted and made
// again while a worker's watcher runs (nothing is sent to its watch): a
// cancel marked in the new bucket is in force within the contract's
// second (and a second of the check's pace), and one that was only in the
// old bucket is not, as for a worker started now. The watcher went on
// following the old bucket: a campaign cancelled after it was made again
// had its rows worked on, with campaign cancel saying it was cancelled.
//
// The account holds the worker's streams, as in production. The bucket's
// stream alone in its account, the server's removal of the account's
// emptied store directory, which runs in the background after the delete,
// could meet the new stream's directory being made: "error creating store
// for stream" (11 of 1800 made again at once under -race, 0 of 1800 with
// another stream in the account).
func TestWatcherFollowsABucketMadeAgain(t *testing.T) {
	t.Parallel()
	_, js := natstest.Connect(t)
	if _, err := queue.Ensure(t.Context(), js, queue.Settings{Tenants: []string{"contoso"}}); err != nil {
		t.Fatal(err)
	}
	kv, err := ControlBucket(t.Context(), js)
	if err != nil {
		t.Fatal(err)
	}
	if err := SetMark(t.Context(), kv, "contoso", "old", Mark{Cancelled: true}); err != nil {
		t.Fatal(err)
	}
	w := runWatcher(t, js)
	if !cancelledWithin(w, "old", 0) {
		t.Fatal("campaign old not cancelled at start")
	}
	if err := js.DeleteKeyValue(t.Context(), offboard.BucketControl); err != nil {
		t.Fatal(err)
	}
	if kv, err = ControlBucket(t.Context(), js); err != nil {
		t.Fatal(err)
	}
	if err := SetMark(t.Context(), kv, "contoso", "wave", Mark{Cancelled: true}); err != nil {
		t.Fatal(err)
	}
	if !cancelledWithin(w, "wave", 2500*time.Millisecond) {
		t.Error("campaign wave, cancelled in the bucket made again, not cancelled")
	}
	if cancelledWithin(w, "old", 0) {
		t.Error("campaign old still cancelled: its mark went with the old bucket")
	}
}

// TestWatcherForgetsMarksPurged: the bucket's stream purged while a
// watcher runs (no delete marker reaches it): the cancel it held is no
// longer in force, as it is not for a worker started now.
func TestWatcherForgetsMarksPurged(t *testing.T) {
	t.Parallel()
	_, js := natstest.Connect(t)
	kv, err := ControlBucket(t.Context(), js)
	if err != nil {
		t.Fatal(err)
	}
	w := runWatcher(t, js)
	if err := SetMark(t.Context(), kv, "contoso", "wave", Mark{Cancelled: true}); err != nil {
		t.Fatal(err)
	}
	if !cancelledWithin(w, "wave", time.Second) {
		t.Fatal("campaign wave not cancelled")
	}
	s, err := js.Stream(t.Context(), "KV_"+offboard.BucketControl)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Purge(t.Context()); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(2500 * time.Millisecond)
	for cancelledWithin(w, "wave", 0) {
		if time.Now().After(deadline) {
			t.Fatal("campaign wave still cancelled after its mark was purged")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestWatcherFollowsAfterNATSRestart: the lone NATS server restarted
// while a worker's watcher runs (its watch's consumer, kept in memory, is
// gone, and the connection comes back without it): a cancel marked once
// the server is back is in force within the contract's second (and a
// second of the check's pace). The watch stayed silent until the client
// library missed two of its heartbeats, about ten seconds, while the
// campaign's requests went on to their offboard calls.
func TestWatcherFollowsAfterNATSRestart(t *testing.T) {
	t.Parallel()
	c := natstest.Start(t, 1)
	_, js := c.Connect(t, nats.MaxReconnects(-1), nats.ReconnectWait(100*time.Millisecond))
	w := runWatcher(t, js)
	c.Shutdown(0)
	c.Restart(0)
	cancelOnFreshConnection(t, c)
	if !cancelledWithin(w, "wave", 2500*time.Millisecond) {
		t.Error("campaign wave, cancelled once NATS was back, not cancelled")
	}
}

// cancelOnFreshConnection marks campaign wave of contoso cancelled over a
// connection of its own, made now.
func cancelOnFreshConnection(t *testing.T, c *natstest.Cluster) {
	t.Helper()
	_, js := c.Connect(t)
	kv, err := ControlBucket(t.Context(), js)
	if err != nil {
		t.Fatal(err)
	}
	if err := SetMark(t.Context(), kv, "contoso", "wave", Mark{Cancelled: true}); err != nil {
		t.Fatal(err)
	}
}

// stalledKV is a control bucket whose next watch, once armed, is made but
// never sends the marks stored: a server that went away between making
// the watch's consumer and sending them.
type stalledKV struct {
	jetstream.KeyValue
	armed   atomic.Bool
	stalled chan struct{} // closed once the stalled watch is made
}

type stalledWatch struct{ updates chan jetstream.KeyValueEntry }

func (s stalledWatch) Updates() <-chan jetstream.KeyValueEntry { return s.updates }
func (s stalledWatch) Stop() error                             { return nil }

func (kv *stalledKV) Watch(ctx context.Context, keys string, opts ...jetstream.WatchOpt) (jetstream.KeyWatcher, error) {
	if kv.armed.CompareAndSwap(true, false) {
		close(kv.stalled)
		return stalledWatch{make(chan jetstream.KeyValueEntry)}, nil
	}
	return kv.KeyValue.Watch(ctx, keys, opts...)
}

// TestWatcherFollowsAfterNATSRestartedTwice: the lone NATS server
// restarted again while the watcher reads the marks anew after a first
// restart, its new watch's consumer lost before it sent them: a cancel
// marked once the server is back is in force within the contract's
// second (and a second of the check's pace). The read waited for the
// lost watch until the client library missed two of its heartbeats.
func TestWatcherFollowsAfterNATSRestartedTwice(t *testing.T) {
	t.Parallel()
	c := natstest.Start(t, 1)
	_, js := c.Connect(t, nats.MaxReconnects(-1), nats.ReconnectWait(100*time.Millisecond))
	w, err := NewWatcher(t.Context(), js, nil)
	if err != nil {
		t.Fatal(err)
	}
	kv := &stalledKV{KeyValue: w.kv, stalled: make(chan struct{})}
	kv.armed.Store(true)
	w.kv = kv
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { w.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	c.Shutdown(0)
	c.Restart(0)
	select {
	case <-kv.stalled:
	case <-time.After(10 * time.Second):
		t.Fatal("the marks were not read anew within 10s of NATS back")
	}
	c.Shutdown(0)
	c.Restart(0)
	cancelOnFreshConnection(t, c)
	if !cancelledWithin(w, "wave", 2500*time.Millisecond) {
		t.Error("campaign wave, cancelled once NATS was back the second time, not cancelled")
	}
}
