package main

import (
	"bytes"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/contoso-secops/mde-offboard/internal/campaign"
	"github.com/contoso-secops/mde-offboard/offboard"
)

// A campaign cancelled while its run still reads the tenant's backlog,
// before its first publish, is cancelled: the run records its campaign
// before that read, so the cancel finds it though none of its requests is
// stored yet, and the run then publishes nothing and reports every row
// cancelled. It answered "no campaign", and the run published every row.
func TestCancelBeforeTheRunsFirstPublish(t *testing.T) {
	t.Parallel()
	url, js := natsWithStreams(t)
	cancelBeforeFirstPublish(t, url, js)
}

// A run started while the control bucket does not exist (no worker has
// made it yet, or it was deleted) makes it, as campaign cancel does, and
// records its campaign there: a cancel during its read of the backlog
// finds the campaign, and the run sees the cancel and publishes nothing.
// The run followed no bucket then: the cancel was refused as no campaign,
// and once rows were stored, the cancel made the bucket and its mark, and
// the run, which never looked again, published every row all the same.
func TestCancelOfARunStartedWithoutTheControlBucket(t *testing.T) {
	t.Parallel()
	url, js := natsWithStreams(t)
	if err := js.DeleteKeyValue(t.Context(), offboard.BucketControl); err != nil {
		t.Fatal(err)
	}
	cancelBeforeFirstPublish(t, url, js)
}

// cancelBeforeFirstPublish runs campaign early over a backlog that takes
// the run a while to read, cancels it as soon as the run has recorded it
// (or published a row), and checks that the run published nothing and
// reported every row cancelled.
func cancelBeforeFirstPublish(t *testing.T, url string, js jetstream.JetStream) {
	t.Helper()
	// A backlog the run reads before it publishes, a thousand
	// acknowledgements outstanding at most: past the client's limit
	// (4,000), a publish waits for them only 200 ms, and a busy server
	// answers slower than that.
	for i := range 50_000 {
		if _, err := js.PublishAsync("mde.offboard.request.contoso", fmt.Appendf(nil, `{"requestId":"other-%d"}`, i)); err != nil {
			t.Fatal(err)
		}
		if i%1000 == 999 {
			select {
			case <-js.PublishAsyncComplete():
			case <-time.After(time.Minute):
				t.Fatal("backlog not stored")
			}
		}
	}
	dir := t.TempDir()
	csvPath := writeFile(t, dir, "early.csv", "machineId\n"+strings.Repeat("a", 40)+"\n"+strings.Repeat("b", 40)+"\n")
	report := filepath.Join(dir, "early-report.csv")
	before := lastRequestSeq(t, js)
	type outcome struct {
		code     int
		out, err string
	}
	ran := make(chan outcome, 1)
	go func() {
		var out, errb bytes.Buffer
		code := run([]string{"--nats-url", url, "campaign", "run", "--tenant", "contoso", "--csv", csvPath, "--report", report, "--timeout", "20s"}, &out, &errb)
		ran <- outcome{code, out.String(), errb.String()}
	}()
	// The campaign's record, or else its first request.
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(5 * time.Millisecond) {
		kv, err := js.KeyValue(t.Context(), offboard.BucketControl)
		if err == nil {
			_, err = kv.Get(t.Context(), campaign.Key("contoso", "early"))
		}
		if err == nil || lastRequestSeq(t, js) != before {
			break
		}
		if !errors.Is(err, jetstream.ErrKeyNotFound) && !errors.Is(err, jetstream.ErrBucketNotFound) || time.Now().After(deadline) {
			t.Fatalf("no record of the run: %v", err)
		}
	}
	code, out, errs := ctl(t, url, "campaign", "cancel", "--tenant", "contoso", "--name", "early", "--reason", "wrong list", "--as", "alice")
	if code != exitOK || !strings.Contains(out, "cancelled") {
		t.Errorf("cancel: exit %d, stdout %q, stderr %q", code, out, errs)
	}
	res := <-ran
	if res.code != exitOK {
		t.Errorf("run: exit %d, stdout %q, stderr %q", res.code, res.out, res.err)
	}
	if n := lastRequestSeq(t, js) - before; n != 0 {
		t.Errorf("the run published %d requests after the cancel", n)
	}
	for _, rec := range readReport(t, report)[1:] {
		if rec[4] != offboard.OutcomeFailed || rec[5] != offboard.CodeCancelled {
			t.Errorf("row %s: %s/%s, want failed/cancelled", rec[0], rec[4], rec[5])
		}
	}
	code, out, errs = ctl(t, url, "campaign", "status", "--tenant", "contoso", "--name", "early")
	if code != exitOK || !strings.Contains(out, "cancelled") || !strings.Contains(out, "alice") {
		t.Errorf("status: exit %d, stdout %q, stderr %q", code, out, errs)
	}
}

// A run that finds no control bucket and may not make it (its user may
// not create streams) could not see a cancel: it publishes nothing and
// says why in one line, exit 1.
func TestRunWithoutAControlBucketItMayNotMake(t *testing.T) {
	t.Parallel()
	url, admin := natsWithReader(t, "$JS.API.STREAM.CREATE.KV_"+offboard.BucketControl)
	if err := admin.DeleteKeyValue(t.Context(), offboard.BucketControl); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	csvPath := writeFile(t, dir, "blind.csv", "machineId\n"+strings.Repeat("a", 40)+"\n")
	code, out, errs := ctl(t, url, "campaign", "run", "--tenant", "contoso", "--csv", csvPath, "--report", filepath.Join(dir, "r.csv"), "--timeout", "20s")
	if code != exitFailed || !strings.Contains(errs, "a cancel could not be followed") || strings.Count(errs, "\n") != 1 {
		t.Errorf("exit %d, stdout %q, stderr %q: want 1 and one line saying a cancel could not be followed", code, out, errs)
	}
	if n := lastRequestSeq(t, admin); n != 0 {
		t.Errorf("%d requests published", n)
	}
}
