package main

import (
	"bytes"
	"errors"
	"fmt"
	"maps"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/contoso-secops/mde-offboard/internal/queue"
	"github.com/contoso-secops/mde-offboard/internal/queue/natstest"
	"github.com/contoso-secops/mde-offboard/offboard"
)

// indexedDeadLetters is a stream of dead letters for the index: 100 of each of
// the request ids r-0 ... r-9 in turn (attempt 1, but 5 for the first of
// r-3), failed with machine_not_found but the last 10 (one of each id),
// failed with api_error; then one without a request id and one whose
// body fails its checks.
func indexedDeadLetters() []deadLetter {
	var ds []deadLetter
	body := []byte(strings.Repeat("b", 1024))
	for i := range 1000 {
		d := deadLetter{Seq: uint64(i + 1), RequestID: fmt.Sprintf("r-%d", i%10), Attempt: 1, Code: offboard.CodeMachineNotFound,
			Message: "not found", body: body, header: nats.Header{"X": {"y"}}}
		if i == 3 {
			d.Attempt = 5
		}
		if i >= 990 {
			d.Code = offboard.CodeAPIError
		}
		ds = append(ds, d)
	}
	return append(ds,
		deadLetter{Seq: 1001, Code: offboard.CodeInvalidRequest, body: body},
		deadLetter{Seq: 1002, RequestID: "r-1", Code: offboard.CodeInvalidRequest, body: body, unchecked: errors.New("bad")},
	)
}

// keptBodies is how many dead letters the index holds with their body or
// headers.
func keptBodies(x *deadIndex) int {
	n := 0
	for _, ds := range [][]deadLetter{x.others, slices.Collect(maps.Values(x.latest))} {
		for _, d := range ds {
			if d.body != nil || d.header != nil {
				n++
			}
		}
	}
	return n
}

// dead retry keeps the body of a dead letter only while it may be
// retried: the latest of its request id, with the code asked for, of the
// request id named by --seq; a thousand dead letters of ten request ids
// are held as ten bodies at most.
func TestDeadIndexKeepsOnlyTheBodiesRetried(t *testing.T) {
	t.Parallel()
	index := func(seq uint64, code string) *deadIndex {
		var codes codeFilter
		if code != "" {
			codes = codeFilter{code}
		}
		x := newDeadIndex(seq, codes)
		for _, d := range indexedDeadLetters() {
			x.add(d)
		}
		return x
	}
	all := index(0, "")
	picked := all.picked()
	if len(picked) != 12 || picked[0].Seq != 991 || picked[9].Seq != 1000 || picked[10].Seq != 1001 || picked[11].Seq != 1002 {
		t.Errorf("--all picked %d: %v", len(picked), picked)
	}
	if n := keptBodies(all); n != 10 {
		t.Errorf("--all holds %d bodies, want those of the 10 latest", n)
	}
	if all.highest["r-3"] != 5 || all.highest["r-4"] != 1 {
		t.Errorf("highest attempts: %v", all.highest)
	}
	if n := keptBodies(index(0, offboard.CodeMachineNotFound)); n != 0 {
		t.Errorf("--all --code machine_not_found holds %d bodies, want none: every latest failed with api_error", n)
	}
	seq := index(14, "")
	if seq.named == nil || seq.named.Seq != 14 || seq.named.body != nil || len(seq.others) != 0 {
		t.Fatalf("--seq 14: named %v, others %d", seq.named, len(seq.others))
	}
	if l := seq.latestOf(*seq.named); l.Seq != 994 || l.body == nil {
		t.Errorf("--seq 14 retries from %d (body kept: %t), want 994 with its body", l.Seq, l.body != nil)
	}
	if n := keptBodies(seq); n != 1 {
		t.Errorf("--seq 14 holds %d bodies, want r-3's latest only", n)
	}
	if l := index(1002, "").named; l == nil || seq.latestOf(*l).Seq != 1002 {
		t.Errorf("--seq 1002 (a body that fails its checks) is retried from %v, not itself", l)
	}
}

// BenchmarkDeadRetryAllOverManyDeadLetters: dead retry --all of a tenant
// whose 10,000 dead letters of 8 KiB are 100 of each of 100 request ids:
// the most it holds while it runs (live-MB: the heap in use after a
// collection, every 10 ms). Run with
// go test -run '^$' -bench DeadRetryAllOverMany -benchmem ./cmd/offboardctl/
func BenchmarkDeadRetryAllOverManyDeadLetters(b *testing.B) {
	nc, js := natstest.Connect(b)
	if _, err := queue.Ensure(b.Context(), js, queue.Settings{Tenants: []string{"contoso"}}); err != nil {
		b.Fatal(err)
	}
	pad := strings.Repeat("p", 8<<10)
	for i := range 10_000 {
		m := nats.NewMsg(offboard.Subjects{}.Dead("contoso"))
		m.Data = []byte(fmt.Sprintf(`{"requestId":"r-%d","machineId":"%s","reason":"%s"}`, i%100, strings.Repeat("a", 40), pad))
		m.Header.Set(offboard.HeaderErrorCode, offboard.CodeMachineNotFound)
		m.Header.Set(offboard.HeaderOriginalSubject, offboard.Subjects{}.Request("contoso", offboard.Normal))
		if _, err := js.PublishMsgAsync(m); err != nil {
			b.Fatal(err)
		}
		if i%1000 == 999 {
			<-js.PublishAsyncComplete()
		}
	}
	<-js.PublishAsyncComplete()
	var peak uint64
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		runtime.GC()
		stop, done := make(chan struct{}), sync.WaitGroup{}
		done.Go(func() {
			var ms runtime.MemStats
			for t := time.NewTicker(10 * time.Millisecond); ; {
				runtime.GC()
				runtime.ReadMemStats(&ms)
				peak = max(peak, ms.HeapAlloc)
				select {
				case <-stop:
					t.Stop()
					return
				case <-t.C:
				}
			}
		})
		var out, errb bytes.Buffer
		code := run([]string{"--nats-url", nc.ConnectedUrl(), "dead", "retry", "contoso", "--all"}, &out, &errb)
		close(stop)
		done.Wait()
		if code != exitOK {
			b.Fatalf("dead retry --all: exit %d: %s", code, errb.String())
		}
	}
	b.ReportMetric(float64(peak)/(1<<20), "live-MB")
}
