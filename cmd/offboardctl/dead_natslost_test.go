package main

import (
	"context"
	"encoding/json"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/contoso-secops/mde-offboard/internal/queue"
	"github.com/contoso-secops/mde-offboard/internal/queue/natstest"
	"github.com/contoso-secops/mde-offboard/offboard"
)

// TestDeadListEndsWhenNATSIsLostMidRead: dead ls whose server goes away
// between two fetches of the list (here after the first 512 dead
// letters) ends by itself, exit 1, one line naming the lost connection
// (21 s: two tries to make the next reader, 10 s each); an interrupt
// ends it at once. Before, the read tried to make its next reader again
// and again for as long as the server was away, and took neither Ctrl-C
// nor SIGTERM: here neither case ended within its time (40 s, 3 s), and
// a list of 6,000 dead letters whose server was killed ran 11 minutes,
// until SIGKILL.
func TestDeadListEndsWhenNATSIsLostMidRead(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		name      string
		interrupt bool
		back      bool // the server restarted 3 s later: the list is whole
		within    time.Duration
	}{
		{"by itself", false, false, 40 * time.Second},
		{"interrupted", true, false, 3 * time.Second},
		{"restarted", false, true, 30 * time.Second},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			srv := natstest.Start(t, 1)
			_, js := srv.Connect(t)
			if _, err := queue.Ensure(t.Context(), js, queue.Settings{Tenants: []string{"contoso"}}); err != nil {
				t.Fatal(err)
			}
			publishManyDead(t, js, 600)

			ctx, cancel := context.WithCancel(t.Context())
			defer cancel()
			lost := make(chan time.Time, 1)
			// The 512th dead letter written ends the first fetch: the
			// server goes away before the next one.
			out := &onWrite{n: 512, fn: func() {
				srv.Shutdown(0)
				lost <- time.Now()
			}}
			done := make(chan int, 1)
			var errb strings.Builder
			go func() {
				done <- runContext(ctx, []string{"--nats-url", srv.URLs(), "dead", "ls", "contoso", "--json"}, out, &errb)
			}()
			var since time.Time
			select {
			case since = <-lost:
			case code := <-done:
				t.Fatalf("dead ls ended before the server went away: exit %d: %s", code, errb.String())
			case <-time.After(30 * time.Second):
				t.Fatal("dead ls did not list 512 dead letters in 30s")
			}
			switch {
			case c.interrupt:
				time.Sleep(500 * time.Millisecond)
				since = time.Now()
				cancel()
			case c.back:
				time.Sleep(3 * time.Second)
				srv.Restart(0)
			}
			select {
			case code := <-done:
				took := time.Since(since)
				t.Logf("exit %d %s after the server went away or the interrupt: %s", code, took.Round(time.Millisecond), errb.String())
				if c.back {
					var ds []deadLetter
					if err := json.Unmarshal([]byte(out.text()), &ds); code != exitOK || err != nil || len(ds) != 600 {
						t.Errorf("exit %d, %d listed (%v), stderr %q: want the whole list of 600, exit 0", code, len(ds), err, errb.String())
					}
					return
				}
				if code != exitFailed || strings.Count(strings.TrimSpace(errb.String()), "\n") != 0 || !strings.Contains(errb.String(), "not whole (512 listed") {
					t.Errorf("exit %d, stderr %q: want 1 and one line saying the list is not whole", code, errb.String())
				}
				if !c.interrupt && !strings.Contains(errb.String(), "connection to NATS") {
					t.Errorf("stderr %q: want the lost connection named", errb.String())
				}
			case <-time.After(c.within):
				t.Fatalf("dead ls did not end within %s of the server going away (interrupted: %v)", c.within, c.interrupt)
			}
		})
	}
}

// publishManyDead publishes n dead letters of tenant contoso, waiting
// for every ack.
func publishManyDead(t *testing.T, js jetstream.JetStream, n int) {
	t.Helper()
	var acks []jetstream.PubAckFuture
	for i := range n {
		m := nats.NewMsg(offboard.Subjects{}.Dead("contoso"))
		m.Data = []byte(`{"requestId":"many-` + strconv.Itoa(i) + `","machineId":"` + strings.Repeat("a", 40) + `"}`)
		m.Header.Set(offboard.HeaderErrorCode, offboard.CodeMachineNotFound)
		m.Header.Set(offboard.HeaderOriginalSubject, offboard.Subjects{}.Request("contoso", offboard.Normal))
		f, err := js.PublishMsgAsync(m)
		if err != nil {
			t.Fatal(err)
		}
		acks = append(acks, f)
	}
	for _, f := range acks {
		select {
		case <-f.Ok():
		case err := <-f.Err():
			t.Fatal(err)
		}
	}
}

// onWrite is a writer that calls fn once, at its nth write.
type onWrite struct {
	mu sync.Mutex
	n  int
	fn func()
	b  strings.Builder
}

func (w *onWrite) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.n--
	if w.n == 0 {
		w.fn()
	}
	return w.b.Write(p)
}

func (w *onWrite) text() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.String()
}
