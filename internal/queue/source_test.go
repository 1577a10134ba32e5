package queue

import (
	"context"
	"errors"
	"fmt"
	"slices"
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
// returns what each one was handed, and the sources. After each message, a
// tenant's loop waits for its turn on gate.
func idleSources(t *testing.T, nc *nats.Conn, js jetstream.JetStream, tenants []string, gate chan struct{}) (map[string]chan string, map[string]*Source) {
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
	srcs := map[string]*Source{}
	for _, name := range tenants {
		src, err := r.Source(ctx, js, name, 2*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		ch := make(chan string, 16)
		got[name], srcs[name] = ch, src
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
	return got, srcs
}

// TestIdleSourcesBarelyAskTheServer: an idle tenant costs the server at
// most a rare safety poll, not a pull every few hundred milliseconds, and
// still gets a new request at once.
func TestIdleSourcesBarelyAskTheServer(t *testing.T) {
	t.Parallel()
	nc, js := connect(t)
	tenants := tenantNames("t", 10)
	gate := make(chan struct{})
	got, srcs := idleSources(t, nc, js, tenants, gate)
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

	// Requests published while the tenant is busy: normal first, once
	// the source knows of them all. Their wake-ups come after the stream
	// took them; a source asking before the normal one's came would
	// rightly take the bulk ones it knew of.
	normal := srcs["t03"].lanes[laneOf(offboard.Normal)]
	wakes := func() uint64 {
		srcs["t03"].mu.Lock()
		defer srcs["t03"].mu.Unlock()
		return normal.wakes
	}
	woken := wakes()
	for _, m := range []struct {
		p    offboard.Priority
		data string
	}{{offboard.Bulk, "b1"}, {offboard.Bulk, "b2"}, {offboard.Normal, "n2"}} {
		if _, err := js.Publish(t.Context(), subj.Request("t03", m.p), []byte(m.data)); err != nil {
			t.Fatal(err)
		}
	}
	for deadline := time.Now().Add(5 * time.Second); wakes() == woken; time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("no wake-up for the normal request within 5s")
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

// TestBusySourceDoesNotAskForCounts: a tenant whose lanes both have
// requests waiting pulls them without asking the server for the
// consumers' counts at every safety poll. (A lane found empty is polled
// again: a wake-up may have been missed.)
func TestBusySourceDoesNotAskForCounts(t *testing.T) {
	t.Parallel()
	nc, js, r, subj := routed(t, "busy")
	for i := range 80 {
		for _, p := range []offboard.Priority{offboard.Normal, offboard.Bulk} {
			if _, err := js.Publish(t.Context(), subj.Request("busy", p), fmt.Appendf(nil, "%s%d", p, i)); err != nil {
				t.Fatal(err)
			}
		}
	}
	const poll = 20 * time.Millisecond
	src, err := r.Source(t.Context(), js, "busy", poll)
	if err != nil {
		t.Fatal(err)
	}
	// The counts came with the consumers; from the first batch on both
	// lanes are known to hold more.
	first, err := src.NextBatch(t.Context(), 1, offboard.Bulk)
	if err != nil {
		t.Fatal(err)
	}
	_ = first[0].Msg.Ack()
	infos := countInfos(t, nc)
	got := 0
	for range 30 {
		time.Sleep(poll) // a safety poll is due at every batch
		ds, err := src.NextBatch(t.Context(), 2, offboard.Normal, offboard.Bulk)
		if err != nil {
			t.Fatal(err)
		}
		for _, d := range ds {
			_ = d.Msg.Ack()
		}
		got += len(ds)
	}
	if got != 60 {
		t.Errorf("%d requests in 30 batches of 2, want 60", got)
	}
	if n := infos.Load(); n != 0 {
		t.Errorf("%d consumer info requests while both lanes were known to hold requests, want 0", n)
	}
}

// routed starts a NATS server with the worker's streams and the
// consumers of the given tenants, and a router that expects them.
func routed(t *testing.T, tenants ...string) (*nats.Conn, jetstream.JetStream, *Router, offboard.Subjects) {
	t.Helper()
	nc, js := connect(t)
	s := Settings{Tenants: tenants}
	if _, err := Ensure(t.Context(), js, s); err != nil {
		t.Fatal(err)
	}
	subj := s.WithDefaults().Subjects
	r, err := NewRouter(nc, subj, tenants...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = r.Close() })
	return nc, js, r, subj
}

// countInfos counts the consumer info requests sent from now on.
func countInfos(t *testing.T, nc *nats.Conn) *atomic.Int64 {
	t.Helper()
	var n atomic.Int64
	sub, err := nc.Subscribe("$JS.API.CONSUMER.INFO.>", func(*nats.Msg) { n.Add(1) })
	if err != nil {
		t.Fatal(err)
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sub.Unsubscribe() })
	return &n
}

// TestNewSourceCountsFromItsConsumers: a source's first counts are those
// that came with its consumers, so a tenant's start costs the two consumer
// lookups and nothing more before its first pull; a request published
// after those counts were read, before the source took its wake-ups, is
// still served at once, not at the idle poll.
func TestNewSourceCountsFromItsConsumers(t *testing.T) {
	// Not parallel: it sets sourceCounted.
	nc, js := connect(t)
	s := Settings{Tenants: []string{"waiting", "late"}}
	if _, err := Ensure(t.Context(), js, s); err != nil {
		t.Fatal(err)
	}
	subj := s.WithDefaults().Subjects
	for i := range 3 {
		if _, err := js.Publish(t.Context(), subj.Request("waiting", offboard.Bulk), fmt.Appendf(nil, "b%d", i)); err != nil {
			t.Fatal(err)
		}
	}
	// The server counts a stored request for a consumer a moment after it
	// acknowledged the publish: on a loaded machine the source read a
	// count of 0, and read the counts again at its next poll (4 consumer
	// infos). The test starts once the consumer counts its requests.
	bulk, err := js.Consumer(t.Context(), offboard.StreamRequests, ConsumerName("waiting", offboard.Bulk))
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "the bulk consumer counts its 3 requests", func() bool {
		info, err := bulk.Info(t.Context())
		return err == nil && info.NumPending == 3
	})
	r, err := NewRouter(nc, subj)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = r.Close() })
	pubs := make(chan error, 1)
	sourceCounted = func(tenant string) {
		if tenant != "late" {
			return
		}
		_, err := js.Publish(context.Background(), subj.Request("late", offboard.Normal), []byte("n0"))
		if err == nil {
			err = nc.Flush() // the router has the wake-up before the source
		}
		pubs <- err
	}
	t.Cleanup(func() { sourceCounted = func(string) {} })

	infos := countInfos(t, nc)
	waiting, err := r.Source(t.Context(), js, "waiting", time.Second)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		ds, err := waiting.NextBatch(t.Context(), 1, offboard.Normal, offboard.Bulk)
		if err != nil {
			t.Fatal(err)
		}
		if got, want := string(ds[0].Msg.Data()), fmt.Sprintf("b%d", i); got != want {
			t.Fatalf("request %d: %q, want %q", i, got, want)
		}
		_ = ds[0].Msg.Ack()
	}
	// The copies of the requests reach the counting subscription's
	// callback after the requests' answers: wait for the two, then for
	// any more to come.
	waitFor(t, 5*time.Second, "the two consumer info requests counted", func() bool { return infos.Load() >= 2 })
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(50 * time.Millisecond)
	if n := infos.Load(); n != 2 {
		t.Errorf("%d consumer info requests to make a source and take its 3 waiting requests, want 2 (the consumers)", n)
	}

	late, err := r.Source(t.Context(), js, "late", time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if err := <-pubs; err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), IdlePoll/2)
	defer cancel()
	start := time.Now()
	ds, err := late.NextBatch(ctx, 1, offboard.Normal, offboard.Bulk)
	if err != nil {
		t.Fatalf("a request published as the source was made: %v after %v", err, time.Since(start))
	}
	if string(ds[0].Msg.Data()) != "n0" {
		t.Fatalf("got %q", ds[0].Msg.Data())
	}
	if took := time.Since(start); took > time.Second {
		t.Errorf("a request published as the source was made was served after %v", took)
	}
}

// TestBusySourcePollsByPulling: while a tenant is busy, its safety poll
// looks at an empty lane by pulling it, not by asking the server for the
// consumers' counts (a JetStream API request, on the queue every API
// request shares); the counts are read again only every IdlePoll. A
// request that comes back without a wake-up (a nak) is still found at the
// next poll.
func TestBusySourcePollsByPulling(t *testing.T) {
	t.Parallel()
	nc, js, r, subj := routed(t, "busy")
	for i := range 40 {
		if _, err := js.Publish(t.Context(), subj.Request("busy", offboard.Normal), fmt.Appendf(nil, "n%d", i)); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := js.Publish(t.Context(), subj.Request("busy", offboard.Bulk), []byte("b0")); err != nil {
		t.Fatal(err)
	}
	const poll = 20 * time.Millisecond
	src, err := r.Source(t.Context(), js, "busy", poll)
	if err != nil {
		t.Fatal(err)
	}
	// The bulk request is taken and naked: it comes back with no
	// wake-up. The bulk lane is empty until then.
	ds, err := src.NextBatch(t.Context(), 1, offboard.Bulk)
	if err != nil {
		t.Fatal(err)
	}
	if err := ds[0].Msg.NakWithDelay(300 * time.Millisecond); err != nil {
		t.Fatal(err)
	}
	// The bulk lane is then found empty: nothing tells of the naked
	// request's return but a poll.
	short, cancelShort := context.WithTimeout(t.Context(), 50*time.Millisecond)
	defer cancelShort()
	if ds, err := src.NextBatch(short, 1, offboard.Bulk); err == nil {
		t.Fatalf("the bulk lane before the nak's delay: %q", ds[0].Msg.Data())
	}
	infos := countInfos(t, nc)
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second) // well within IdlePoll
	defer cancel()
	var order []string
	for len(order) < 41 {
		time.Sleep(poll) // a safety poll is due at every batch
		ds, err := src.NextBatch(ctx, 2, offboard.Normal, offboard.Bulk)
		if err != nil {
			t.Fatalf("after %d requests (%v): %v", len(order), order, err)
		}
		for _, d := range ds {
			_ = d.Msg.Ack()
			order = append(order, string(d.Msg.Data()))
		}
	}
	if !slices.Contains(order, "b0") {
		t.Errorf("the naked bulk request did not come back: %v", order)
	}
	if n := infos.Load(); n != 0 {
		t.Errorf("%d consumer info requests from a busy source with an empty lane, within %v of its counts; want 0", n, IdlePoll)
	}
}

// TestWakeUpHeardBeforeTheSourceIsMade: the router hears of a request
// before the tenant's source is made, and the stream stores it only after
// the source read its consumers' counts (its inbound queue behind a burst
// of publishes). The wake-up is kept for the expected tenant, so the
// request is served once stored, not at the idle poll.
func TestWakeUpHeardBeforeTheSourceIsMade(t *testing.T) {
	t.Parallel()
	tenants := []string{"late0", "late1", "late2"}
	nc, js, r, subj := routed(t, tenants...)
	if err := r.sub.SetPendingLimits(-1, -1); err != nil {
		t.Fatal(err)
	}
	burst, err := nats.Connect(nc.ConnectedUrl())
	if err != nil {
		t.Fatal(err)
	}
	defer burst.Close()
	// Under the server's queue of 100,000 messages per stream, past
	// which it drops them. The burst is tried again, with another tenant,
	// if the stream kept up with it.
	const n = 80000
	payload := make([]byte, 64)
	for _, tenant := range tenants {
		before, _ := r.sub.Delivered()
		for range n {
			if err := burst.Publish(subj.Request("other", offboard.Normal), payload); err != nil {
				t.Fatal(err)
			}
		}
		if err := burst.Publish(subj.Request(tenant, offboard.Normal), []byte(tenant)); err != nil {
			t.Fatal(err)
		}
		if err := burst.Flush(); err != nil {
			t.Fatal(err)
		}
		heard := time.Now().Add(20 * time.Second)
		for { // the router has heard of it
			d, _ := r.sub.Delivered()
			if d >= before+n+1 {
				break
			}
			if time.Now().After(heard) {
				t.Fatalf("%s: the router heard of %d of the burst's %d requests after 20s", tenant, d-before, n+1)
			}
			time.Sleep(time.Millisecond)
		}
		time.Sleep(10 * time.Millisecond) // and handled it
		src, err := r.Source(t.Context(), js, tenant, 2*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		if src.lanes[0].cons.CachedInfo().NumPending > 0 {
			t.Logf("%s: stored before the source read its counts; again", tenant)
			continue
		}
		probe, err := js.Consumer(t.Context(), offboard.StreamRequests, ConsumerName(tenant, offboard.Normal))
		if err != nil {
			t.Fatal(err)
		}
		for stored := time.Now().Add(20 * time.Second); probe.CachedInfo().NumPending == 0; {
			if time.Now().After(stored) {
				t.Fatalf("%s: its request not stored after 20s", tenant)
			}
			time.Sleep(10 * time.Millisecond)
			if _, err := probe.Info(t.Context()); err != nil {
				t.Fatal(err)
			}
		}
		ctx, cancel := context.WithTimeout(t.Context(), IdlePoll/2)
		defer cancel()
		start := time.Now()
		ds, err := src.NextBatch(ctx, 1, offboard.Normal, offboard.Bulk)
		if err != nil {
			t.Fatalf("a request the router heard of before its source was made: %v after %v", err, time.Since(start))
		}
		if took := time.Since(start); string(ds[0].Msg.Data()) != tenant || took > 5*time.Second {
			t.Errorf("served %q %v after it was stored", ds[0].Msg.Data(), took)
		}
		return
	}
	t.Fatalf("the stream stored every request before its source read its counts (%d tries): no burst of %d held it back", len(tenants), n)
}

// TestSourceIdleAfterBusyStopsPolling: a tenant that had a request and
// now has none reads the counts at the first poll whose pulls find
// nothing, and from then on polls as an idle tenant does, every IdlePoll,
// rather than pulling both lanes every poll.
func TestSourceIdleAfterBusyStopsPolling(t *testing.T) {
	t.Parallel()
	nc, js, r, subj := routed(t, "quiet")
	const poll = 50 * time.Millisecond
	src, err := r.Source(t.Context(), js, "quiet", poll)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := js.Publish(t.Context(), subj.Request("quiet", offboard.Normal), []byte("one")); err != nil {
		t.Fatal(err)
	}
	ds, err := src.NextBatch(t.Context(), 1, offboard.Normal, offboard.Bulk)
	if err != nil {
		t.Fatal(err)
	}
	if err := ds[0].Msg.DoubleAck(t.Context()); err != nil {
		t.Fatal(err)
	}
	var pulls atomic.Int64
	sub, err := nc.Subscribe("$JS.API.CONSUMER.MSG.NEXT.>", func(*nats.Msg) { pulls.Add(1) })
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = sub.Unsubscribe() }()
	infos := countInfos(t, nc)
	ctx, cancel := context.WithTimeout(t.Context(), 40*poll)
	defer cancel()
	if ds, err := src.NextBatch(ctx, 1, offboard.Normal, offboard.Bulk); err == nil {
		t.Fatalf("an idle tenant was handed %q", ds[0].Msg.Data())
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	src.mu.Lock()
	busy := src.busy
	src.mu.Unlock()
	if busy || pulls.Load() > 6 || infos.Load() > 2 {
		t.Errorf("over %v idle after a request: %d pulls, %d consumer infos, still busy %v; want a poll's pulls, then the counts, then quiet",
			40*poll, pulls.Load(), infos.Load(), busy)
	}
}

// TestPullHandsOnWhatCameBeforeAnError: a pull that the client ends with
// an error part way (a message with no body and a Status header, which the
// Go client takes for a status of the server: "nats: consumer deleted")
// still hands on the requests that came before it. Dropped with the
// error, they were delivered to nobody and waited out their ack wait.
func TestPullHandsOnWhatCameBeforeAnError(t *testing.T) {
	t.Parallel()
	_, js, r, subj := routed(t, "contoso")
	publish := func(data, status string) {
		t.Helper()
		m := nats.NewMsg(subj.Request("contoso", offboard.Normal))
		m.Data = []byte(data)
		if status != "" {
			m.Header.Set("Status", status)
			m.Header.Set("Description", "Consumer Deleted")
		}
		if _, err := js.PublishMsg(t.Context(), m); err != nil {
			t.Fatal(err)
		}
	}
	publish("A", "")
	publish("", "409")
	src, err := r.Source(t.Context(), js, "contoso", time.Second)
	if err != nil {
		t.Fatal(err)
	}
	ds, err := src.NextBatch(t.Context(), 4, offboard.Normal, offboard.Bulk)
	if err != nil {
		t.Fatalf("pull: %v; want A, the request before the lookalike", err)
	}
	var got []string
	for _, d := range ds {
		got = append(got, string(d.Msg.Data()))
		if err := d.Msg.Ack(); err != nil {
			t.Fatal(err)
		}
	}
	if !slices.Equal(got, []string{"A"}) {
		t.Errorf("pulled %q, want [A]", got)
	}
}

// TestPullCountsWhatWasPublishedMeanwhile: requests published while a
// pull is under way are counted, though the count the pull brings back
// (the last message's) is older than them. The worker's backlog gauges
// and its held requests read this count; read as 0, a tenant waiting
// for quota showed no backlog until its next look at the consumers, up
// to IdlePoll later.
func TestPullCountsWhatWasPublishedMeanwhile(t *testing.T) {
	// Not parallel: it sets sourcePulled.
	_, js, r, subj := routed(t, "contoso")
	src, err := r.Source(t.Context(), js, "contoso", time.Second)
	if err != nil {
		t.Fatal(err)
	}
	publish := func(data string) {
		t.Helper()
		if _, err := js.Publish(t.Context(), subj.Request("contoso", offboard.Normal), []byte(data)); err != nil {
			t.Error(err)
		}
	}
	heard := func() uint64 {
		src.mu.Lock()
		defer src.mu.Unlock()
		return src.lanes[0].published
	}
	publish("r0")
	var once sync.Once
	sourcePulled = func() {
		once.Do(func() {
			before := heard()
			publish("r1")
			publish("r2")
			for deadline := time.Now().Add(10 * time.Second); heard() < before+2; time.Sleep(time.Millisecond) {
				if time.Now().After(deadline) {
					t.Error("the source did not hear of r1 and r2")
					return
				}
			}
		})
	}
	t.Cleanup(func() { sourcePulled = func() {} })
	ds, err := src.NextBatch(t.Context(), 1, offboard.Normal)
	if err != nil || len(ds) != 1 || string(ds[0].Msg.Data()) != "r0" {
		t.Fatalf("pull: %v, %d", err, len(ds))
	}
	if normal, _, err := src.Backlog(t.Context()); err != nil || normal < 2 {
		t.Errorf("backlog after the pull: %d, %v; want r1 and r2 counted", normal, err)
	}
}

// TestPullOfADeletedConsumerSaysItIsMissing: a pull from a consumer that
// is gone (deleted by hand, lost with a lone server's restart) gets no
// answer but the client's "no responders". Said so, the tenant's loop
// took it for a passing outage, logged it every second and never asked
// for its consumer to be made again: it waited for the next minute's
// look. The pull says the consumer is missing.
func TestPullOfADeletedConsumerSaysItIsMissing(t *testing.T) {
	t.Parallel()
	_, js, r, subj := routed(t, "contoso")
	if _, err := js.Publish(t.Context(), subj.Request("contoso", offboard.Normal), []byte("A")); err != nil {
		t.Fatal(err)
	}
	src, err := r.Source(t.Context(), js, "contoso", time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	if err := js.DeleteConsumer(t.Context(), offboard.StreamRequests, ConsumerName("contoso", offboard.Normal)); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	_, err = src.NextBatch(ctx, 4, offboard.Normal, offboard.Bulk)
	if !errors.Is(err, jetstream.ErrConsumerNotFound) {
		t.Errorf("pull from a deleted consumer: %v; want %v", err, jetstream.ErrConsumerNotFound)
	}
}

// TestSourcesMadeTogetherCountApart: a hundred tenants' sources made
// at once, as at a worker's start, read their consumers' counts again
// within IdlePoll, spread over its last tenth, not all at one instant:
// a thousand tenants' two consumer infos each came in one burst on the
// server's JetStream API queue, and in one burst of the worker's
// garbage, every 30 s.
func TestSourcesMadeTogetherCountApart(t *testing.T) {
	t.Parallel()
	nc, js := connect(t)
	tenants := tenantNames("t", 100)
	_, srcs := idleSources(t, nc, js, tenants, make(chan struct{}))
	now := time.Now()
	earliest, latest := time.Duration(1<<62), time.Duration(0)
	for _, src := range srcs {
		// As a count made now would leave it.
		src.counts([2]*jetstream.ConsumerInfo{{}, {}}, now)
		d := src.untilPoll(now)
		earliest, latest = min(earliest, d), max(latest, d)
	}
	t.Logf("next counts of %d sources counted together: %v to %v later", len(srcs), earliest, latest)
	if earliest <= IdlePoll*9/10 || latest > IdlePoll {
		t.Errorf("next counts %v to %v later, want within (%v, %v]", earliest, latest, IdlePoll*9/10, IdlePoll)
	}
	if latest-earliest < IdlePoll/20 {
		t.Errorf("next counts within %v of each other, want them spread over at least %v", latest-earliest, IdlePoll/20)
	}
}

// tenantNames is n tenant names: prefix and a number of its own, from 0,
// of two digits at least and as wide as the largest.
func tenantNames(prefix string, n int) []string {
	names := make([]string, n)
	for i := range names {
		names[i] = fmt.Sprintf("%s%0*d", prefix, max(2, len(fmt.Sprint(n-1))), i)
	}
	return names
}
