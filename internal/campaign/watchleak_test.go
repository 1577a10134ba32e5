package campaign

import (
	"context"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/contoso-secops/mde-offboard/internal/queue/natstest"
	"github.com/contoso-secops/mde-offboard/internal/testwait"
)

// watchGoroutines counts the client library's goroutines that each wait
// for the end of a watch's context.
func watchGoroutines() int {
	buf := make([]byte, 1<<20)
	for {
		n := runtime.Stack(buf, true)
		if n < len(buf) {
			buf = buf[:n]
			break
		}
		buf = make([]byte, 2*len(buf))
	}
	return strings.Count(string(buf), "(*js).subscribe.func")
}

// TestWatcherOnAClosedConnectionLeavesNoGoroutine: a watcher whose
// connection the client closed for good (the server refused its
// credentials on reconnecting) and that is then stopped leaves nothing
// running. The client library ends its watch's goroutine when the
// watch's context ends, or when an unsubscribe reaches the connection,
// which a closed one no longer takes; the watch ran under a context that
// never ended, and each watcher stopped so left a goroutine for the
// process's life. Not parallel: it counts the process's goroutines.
func TestWatcherOnAClosedConnectionLeavesNoGoroutine(t *testing.T) {
	nc, js := natstest.Connect(t)
	before := watchGoroutines()
	w, err := NewWatcher(t.Context(), js, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { w.Run(ctx); close(done) }()
	if watchGoroutines() <= before {
		t.Fatal("the watch's goroutine is not seen: the test counts the wrong thing")
	}
	nc.Close()
	cancel()
	testwait.For(t, done, 10*time.Second, "the watcher on a closed connection to stop after its cancel")
	deadline := time.Now().Add(5 * time.Second)
	for watchGoroutines() > before {
		if time.Now().After(deadline) {
			t.Fatalf("%d watch goroutines left once the watcher stopped on a closed connection, want %d", watchGoroutines(), before)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
