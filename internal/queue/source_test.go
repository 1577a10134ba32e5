package queue

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/contoso-secops/mde-offboard/offboard"
)

// apiCounter counts the JetStream API requests (pulls, consumer infos,
// ...) clients of the account send.
type apiCounter struct {
	n   atomic.Int64
	sub *nats.Subscription
}

func countAPI(t *testing.T, nc *nats.Conn) *apiCounter {
	t.Helper()
	c := &apiCounter{}
	sub, err := nc.Subscribe("$JS.API.>", func(*nats.Msg) { c.n.Add(1) })
	if err != nil {
		t.Fatal(err)
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	c.sub = sub
	t.Cleanup(func() { _ = sub.Unsubscribe() })
	return c
}

// idleSources starts n tenants' sources, each waiting in Next, and
// returns what each one was handed. After each message, a tenant's loop
// waits for its turn on gate.
func idleSources(t *testing.T, nc *nats.Conn, js jetstream.JetStream, tenants []string, gate chan struct{}) map[string]chan string {
	t.Helper()
	s := Settings{Tenants: tenants}
	if _, err := Ensure(t.Context(), js, s); err != nil {
		t.Fatal(err)
	}
	r, err := NewRouter(nc, s.WithDefaults().Subjects)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	t.Cleanup(func() { cancel(); wg.Wait(); _ = r.Close() })
	got := map[string]chan string{}
	for _, name := range tenants {
		src, err := r.Source(ctx, js, name, 2*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		ch := make(chan string, 16)
		got[name] = ch
		wg.Go(func() {
			for {
				msg, prio, err := src.Next(ctx)
				if err != nil {
					return
				}
				_ = msg.Ack()
				ch <- string(prio) + ":" + string(msg.Data())
				select {
				case <-gate:
				case <-ctx.Done():
					return
				}
			}
		})
	}
	return got
}

// TestIdleSourcesBarelyAskTheServer: an idle tenant costs the server at
// most a rare safety poll, not a pull every few hundred milliseconds, and
// still gets a new request at once.
func TestIdleSourcesBarelyAskTheServer(t *testing.T) {
	t.Parallel()
	nc, js := connect(t)
	tenants := make([]string, 10)
	for i := range tenants {
		tenants[i] = fmt.Sprintf("t%02d", i)
	}
	gate := make(chan struct{})
	got := idleSources(t, nc, js, tenants, gate)
	api := countAPI(t, nc)
	// Let every source finish its first look at the stream.
	time.Sleep(time.Second)
	before := api.n.Load()
	time.Sleep(5 * time.Second)
	idle := api.n.Load() - before
	t.Logf("%d JetStream API requests in 5s from %d idle tenants", idle, len(tenants))
	if idle > 2 {
		t.Errorf("%d JetStream API requests in 5s from %d idle tenants, want at most 2", idle, len(tenants))
	}

	// Woken at once, normal before bulk.
	subj := Settings{}.WithDefaults().Subjects
	start := time.Now()
	if _, err := js.Publish(t.Context(), subj.Request("t03", offboard.Normal), []byte("n1")); err != nil {
		t.Fatal(err)
	}
	select {
	case v := <-got["t03"]:
		if v != "normal:n1" {
			t.Fatalf("got %q", v)
		}
	case <-time.After(time.Second): // the safety poll is far longer
		t.Fatal("an idle tenant's request was not picked up within 1s")
	}
	t.Logf("picked up %v after the publish", time.Since(start))

	// Requests published while the tenant is busy: normal first.
	for _, m := range []struct {
		p    offboard.Priority
		data string
	}{{offboard.Bulk, "b1"}, {offboard.Bulk, "b2"}, {offboard.Normal, "n2"}} {
		if _, err := js.Publish(t.Context(), subj.Request("t03", m.p), []byte(m.data)); err != nil {
			t.Fatal(err)
		}
	}
	gate <- struct{}{}
	for _, want := range []string{"normal:n2", "bulk:b1", "bulk:b2"} {
		select {
		case v := <-got["t03"]:
			if v != want {
				t.Fatalf("got %q, want %q", v, want)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("no %s within 5s", want)
		}
		gate <- struct{}{}
	}
}
