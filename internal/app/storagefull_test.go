package app

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/contoso-secops/mde-offboard/internal/queue"
	"github.com/contoso-secops/mde-offboard/internal/queue/natstest"
	"github.com/contoso-secops/mde-offboard/offboard"
)

// fullServer starts a NATS server whose JetStream storage (max_file_store)
// is taken up by another stream, and connects the publisher to it.
func fullServer(e *env) string {
	t := e.t
	t.Helper()
	url := natstest.StartWithOptions(t, func(o *server.Options) { o.JetStreamMaxStore = 1 << 20 })
	e.connect(url)
	if _, err := e.js.CreateStream(t.Context(), jetstream.StreamConfig{Name: "OTHER", Subjects: []string{"other"}}); err != nil {
		t.Fatal(err)
	}
	body := make([]byte, 60<<10)
	for {
		_, err := e.js.Publish(t.Context(), "other", body)
		var api *jetstream.APIError
		if errors.As(err, &api) && api.ErrorCode == 10023 { // insufficient resources
			return url
		}
		if err != nil {
			t.Fatal(err)
		}
	}
}

// TestStartOnAServerOutOfStorageEndsAtOnce: a start whose first write
// NATS refuses (its JetStream storage full: the replica's announcement is
// not stored) fails at once, saying so and what to do. Before, the start waited for the
// whole stop limit (45 s) before it returned: the failed service's end
// had been read by the start, and its cleanup waited for it again.
func TestStartOnAServerOutOfStorageEndsAtOnce(t *testing.T) {
	t.Parallel()
	e := setup(t, envConfig{tenants: []string{"contoso"}, machines: 1, noStart: true})
	o := e.opts
	o.NATSURL = fullServer(e)
	a, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = a.Stop(context.Background()) })
	began := time.Now()
	err = a.Start(t.Context())
	if err == nil || !strings.Contains(err.Error(), "insufficient resources") || !strings.Contains(err.Error(), queue.StoreRefusedHint) {
		t.Fatalf("start: %v, want NATS's refusal and what to do", err)
	}
	if took := time.Since(began); took >= a.stopLimit()/2 {
		t.Errorf("start failed after %v: it waited for the stop limit (%v)", took, a.stopLimit())
	}
}

// TestResultsStreamFullIsToldAndLosesNothing: a results stream at its
// limit (max_msgs with discard new, set by hand while the worker runs)
// refuses a result. The request waits in the stream, its action made
// once, and the log says, as an error, what refuses it and what to do;
// with room made, it is answered once. Before, the refusal (a 503) was
// taken for an outage: the request came back four times a second, each
// time logged as a warning that said nothing of a limit.
func TestResultsStreamFullIsToldAndLosesNothing(t *testing.T) {
	t.Parallel()
	core, logs := observer.New(zap.WarnLevel)
	e := setup(t, envConfig{tenants: []string{"contoso"}, machines: 2, logger: zap.New(core)})
	res := e.collect("mde.offboard.result.>")
	cfg := fillResults(t, e, res)
	e.offboardEach("contoso", "r", 1, 2)
	told := func() bool {
		for _, l := range logs.All() {
			if l.Level == zap.ErrorLevel && strings.Contains(l.Message, queue.StoreRefusedHint) &&
				strings.Contains(l.ContextMap()["error"].(string), "maximum messages exceeded") {
				return true
			}
		}
		return false
	}
	eventually(t, 20*time.Second, "the refused result told as an error, with what to do", told)
	if _, err := e.js.UpdateStream(t.Context(), cfg); err != nil {
		t.Fatal(err)
	}
	got := res.wait(t, 2, 20*time.Second)
	if n := len(got["contoso/r1"]); n != 1 {
		t.Errorf("r1: %d results, want 1", n)
	}
	e.oneActionEach("contoso", 2)
}

// fillResults answers request r0 of contoso, then limits the results
// stream to the one result it holds, refusing new ones (discard new): the
// stream is full. It returns the stream's settings before.
func fillResults(t *testing.T, e *env, res *collector) jetstream.StreamConfig {
	t.Helper()
	e.offboardEach("contoso", "r", 0, 1)
	res.wait(t, 1, 20*time.Second)
	stream, err := e.js.Stream(t.Context(), offboard.StreamResults)
	if err != nil {
		t.Fatal(err)
	}
	cfg := stream.CachedInfo().Config
	limited := cfg
	limited.MaxMsgs, limited.Discard = 1, jetstream.DiscardNew
	if _, err := e.js.UpdateStream(t.Context(), limited); err != nil {
		t.Fatal(err)
	}
	return cfg
}

// TestStartOnAFullDataDirNamesIt: the embedded server's storage is three
// quarters of the space free on --data-dir's disk at its start, none on a
// full disk, and no setting raises it. A start refused for it says which
// directory to free. Before, the error named only the server's
// max_file_store and the account's limits, neither of which the
// operator of an embedded server can set.
func TestStartOnAFullDataDirNamesIt(t *testing.T) {
	t.Parallel()
	e := setup(t, envConfig{tenants: []string{"contoso"}, machines: 1, noStart: true})
	a, err := New(e.opts)
	if err != nil {
		t.Fatal(err)
	}
	a.embeddedMaxStore = 1 // a full disk: nothing can be stored
	t.Cleanup(func() { _ = a.Stop(context.Background()) })
	err = a.Start(t.Context())
	if err == nil || !strings.Contains(err.Error(), "insufficient") {
		t.Fatalf("start: %v, want the storage refused", err)
	}
	if !strings.Contains(err.Error(), "--data-dir "+e.opts.DataDir) {
		t.Errorf("start: %v\nwant --data-dir %s named", err, e.opts.DataDir)
	}
}

// TestEmbeddedStorageFullWhileRunningNamesTheDataDir: the embedded
// server's storage, fixed at its start from the disk's free space, taken
// up while the worker runs. The refused request waits in the stream, and
// the error logged says where the embedded server stores and that a
// restart takes the space freed. Before, it advised raising the server's
// max_file_store or the account's limits, which an embedded server has
// no setting for.
func TestEmbeddedStorageFullWhileRunningNamesTheDataDir(t *testing.T) {
	t.Parallel()
	core, logs := observer.New(zap.ErrorLevel)
	e := setup(t, envConfig{tenants: []string{"contoso"}, machines: 2, limits: `["1/5s"]`, logger: zap.New(core), noStart: true})
	a, err := New(e.opts)
	if err != nil {
		t.Fatal(err)
	}
	a.embeddedMaxStore = 4 << 20
	if err := a.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = a.Stop(context.Background()) })
	e.connect(a.NATSURL())
	res := e.collect("mde.offboard.result.>")
	e.offboardEach("contoso", "r", 0, 2)
	res.wait(t, 1, 20*time.Second) // r1 waits for the window
	if _, err := e.js.CreateStream(t.Context(), jetstream.StreamConfig{Name: "OTHER", Subjects: []string{"other"}}); err != nil {
		t.Fatal(err)
	}
	for _, size := range []int{60 << 10, 4 << 10, 256} {
		for {
			_, err := e.js.Publish(t.Context(), "other", make([]byte, size))
			if queue.StoreRefused(err) {
				break
			}
			if err != nil {
				t.Fatal(err)
			}
		}
	}
	eventually(t, 20*time.Second, "the refusal logged, naming the data dir", func() bool {
		for _, l := range logs.All() {
			if strings.Contains(l.Message, queue.StoreRefusedHint) && strings.Contains(l.Message, "--data-dir "+e.opts.DataDir) {
				return true
			}
		}
		return false
	})
}
