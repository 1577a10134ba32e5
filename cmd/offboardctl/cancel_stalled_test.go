package main

import (
	"context"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/contoso-secops/mde-offboard/internal/testwait"
	"github.com/contoso-secops/mde-offboard/offboard"
	"github.com/nats-io/nats.go/jetstream"
)

// A run whose publishing stalls (the stream stores the rows but its
// acknowledgements do not come: here the stream is set not to answer)
// stops publishing as soon as its campaign is cancelled, reports the rows
// it did not publish cancelled, and says how many it sent before the
// cancel. It went on waiting for the server, the cancel unseen, until a
// publish timed out (30 s) and freed a place: the next row was then
// published after the cancel.
func TestCancelStopsAStalledPublishing(t *testing.T) {
	t.Parallel()
	url, js := natsWithStreams(t)
	stallRequests(t, js)
	dir := t.TempDir()
	csvPath := writeFile(t, dir, "stall.csv", numberedCSV(20))
	// Interrupted once its progress shows the rows not sent cancelled,
	// or 10 s after the cancel, far less than the 30 s a publish waits
	// for its acknowledgement.
	ctx, interrupt := context.WithCancel(t.Context())
	defer interrupt()
	out := &cancelAtLine{part: "failed 18", cancel: interrupt}
	var errb strings.Builder
	done := make(chan int, 1)
	go func() {
		done <- runContext(ctx, []string{"--nats-url", url, "campaign", "run", "--tenant", tenant, "--csv", csvPath,
			"--report", filepath.Join(dir, "r.csv"), "--max-pending", "2", "--progress-every", "50ms"}, out, &errb)
	}()
	for deadline := time.Now().Add(30 * time.Second); lastRequestSeq(t, js) < 2; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the run sent no 2 rows in 30s")
		}
	}
	if code, out, errs := ctl(t, url, "campaign", "cancel", "--tenant", tenant, "--name", "stall"); code != exitOK {
		t.Fatalf("cancel: exit %d, stdout %q, stderr %q", code, out, errs)
	}
	time.AfterFunc(10*time.Second, interrupt)
	testwait.For(t, done, time.Minute, "the interrupted run")
	res := ran{out: out.String(), err: errb.String()}
	if n := lastRequestSeq(t, js); n != 2 {
		t.Errorf("%d rows stored, want the 2 sent before the cancel", n)
	}
	if !strings.Contains(res.out, "failed 18, no result 2") {
		t.Errorf("the 18 rows not sent are not reported cancelled: stdout %q", res.out)
	}
	if !strings.Contains(res.err, "campaign stall was cancelled: publishing stopped (rows sent before the cancel: 2)") {
		t.Errorf("stderr %q does not say how many rows were sent before the cancel", res.err)
	}
}

// stallRequests sets the request stream to store what is published
// without acknowledging it.
func stallRequests(t *testing.T, js jetstream.JetStream) {
	t.Helper()
	s, err := js.Stream(t.Context(), offboard.StreamRequests)
	if err != nil {
		t.Fatal(err)
	}
	cfg := s.CachedInfo().Config
	cfg.NoAck = true
	if _, err := js.UpdateStream(t.Context(), cfg); err != nil {
		t.Fatal(err)
	}
}
