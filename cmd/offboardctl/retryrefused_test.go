package main

import (
	"io"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/contoso-secops/mde-offboard/internal/campaign"
	"github.com/contoso-secops/mde-offboard/internal/control"
	"github.com/contoso-secops/mde-offboard/internal/queue"
	"github.com/contoso-secops/mde-offboard/offboard"
)

// TestDeadRetryStopsAtARefusedPublish: dead retry --all under a
// credential that may read the dead letters but not publish requests (the
// worker's, say) stops at the first retry the server does not take, where
// it waited out a publish of each in turn (ten seconds each: over an hour
// for the hundreds an expired secret leaves), each failing as the first.
// One line says so; the same command retries them once it can.
func TestDeadRetryStopsAtARefusedPublish(t *testing.T) {
	t.Parallel()
	url, js := natsWithReader(t, "mde.offboard.request.>")
	a := strings.Repeat("a", 40)
	publishDead(t, js, offboard.CodeUnauthorized,
		`{"requestId":"x-1","machineId":"`+a+`"}`, `{"requestId":"x-2","machineId":"`+a+`"}`, `{"requestId":"x-3","machineId":"`+a+`"}`)

	code, out, errs := ctl(t, url, "--connect-timeout", "1s", "dead", "retry", "contoso", "--all")
	if code != exitFailed || strings.Count(out, "publish the retry") != 1 || !strings.Contains(out, "0 retried, 0 retried before (the stream dropped the repeat), 3 not retried") ||
		!strings.Contains(errs, "2 dead letters left") || !strings.Contains(errs, "Permissions Violation") || strings.Count(errs, "\n") != 1 ||
		strings.Contains(errs, "leader election") || strings.Contains(errs, "connect-timeout") {
		t.Errorf("dead retry --all: exit %d, stdout %q, stderr %q", code, out, errs)
	}
}

// TestDeadRetrySkipsATooLargeRetry: a retry the request stream refuses
// for its size (a dead letter near the 64 KiB limit whose own headers and
// next attempt take it past the stream's max_msg_size) is that dead
// letter's alone: dead retry --all says so, retries the dead letters after
// it and exits 1, where it stopped at the first and every later run
// stopped at it again.
func TestDeadRetrySkipsATooLargeRetry(t *testing.T) {
	t.Parallel()
	url, js := natsWithStreams(t)
	a := strings.Repeat("a", 40)
	big := `{"requestId":"x-1","machineId":"` + a + `"}`
	big = big[:len(big)-1] + strings.Repeat(" ", offboard.MaxRequestSize-len(big)-16) + "}"
	m := nats.NewMsg(offboard.Subjects{}.Dead("contoso"))
	m.Data = []byte(big)
	m.Header.Set(offboard.HeaderErrorCode, offboard.CodeUnauthorized)
	m.Header.Set(offboard.HeaderOriginalSubject, offboard.Subjects{}.Request("contoso", offboard.Normal))
	m.Header.Set("X-Trace", strings.Repeat("t", offboard.MaxRequestHeaders))
	if _, err := js.PublishMsg(t.Context(), m); err != nil {
		t.Fatal(err)
	}
	publishDead(t, js, offboard.CodeUnauthorized, `{"requestId":"x-2","machineId":"`+a+`"}`, `{"requestId":"x-3","machineId":"`+a+`"}`)

	code, out, errs := ctl(t, url, "dead", "retry", "contoso", "--all")
	if code != exitFailed || !strings.Contains(out, "dead letter 1: ") || !strings.Contains(out, "message size exceeds maximum") ||
		!strings.Contains(out, "retried x-2 attempt 2") || !strings.Contains(out, "retried x-3 attempt 2") ||
		!strings.Contains(out, "2 retried, 0 retried before (the stream dropped the repeat), 1 not retried") ||
		strings.Contains(errs, "left") || strings.Count(errs, "\n") != 1 {
		t.Errorf("dead retry --all: exit %d, stdout %q, stderr %q", code, out, errs)
	}
}

// TestCampaignRunRefusedPublishIsNotPublishedAgain: campaign run under a
// user that may not publish requests (NATS refuses each publish, which
// then times out with no answer) counts the rows not published once their
// publish times out, and says why in one line, the password left out.
// Each was published again for 30 s, one row after the other, in
// silence: 3 rows took 105 s, or ran out a --timeout.
func TestCampaignRunRefusedPublishIsNotPublishedAgain(t *testing.T) {
	t.Parallel()
	url, _ := natsWithReader(t, "mde.offboard.request.>")
	dir := t.TempDir()
	p := writeFile(t, dir, "c.csv", "computerDnsName\npc-1\npc-2\npc-3\n")
	start := time.Now()
	code, out, errs := ctl(t, url, "--connect-timeout", "1s", "campaign", "run", "--tenant", "contoso", "--csv", p,
		"--report", filepath.Join(dir, "r.csv"), "--timeout", "20s")
	took := time.Since(start)
	t.Logf("%v: exit %d: stderr %q", took, code, errs)
	if code != exitFailed || !strings.Contains(errs, "3 rows could not be published") || !strings.Contains(errs, "Permissions Violation") ||
		strings.Count(strings.TrimSpace(errs), "\n") != 0 || strings.Contains(errs, "pw@") || strings.Contains(errs, "ran out") {
		t.Errorf("exit %d, want 1 and one line saying the 3 rows were refused: stdout %q, stderr %q", code, out, errs)
	}
	if took > publishAckWait+5*time.Second {
		t.Errorf("the run took %v, want the rows given up once their publish timed out (%v)", took, publishAckWait)
	}
}

// TestPublishRefusedOutlivesAnotherRefusal: a publish NATS refused stays
// refused when a refusal of another subject comes before its timeout is
// looked at (campaign run reads the workers' presence every 5 s, which a
// user that may not publish requests may not read either). Only the
// connection's last error was looked at: the run published such rows
// again, refused each time, until a timeout fell before the next read,
// or for 30 s; a control write so refused was told as perhaps stored.
// A refusal of another subject does not make a publish refused.
func TestPublishRefusedOutlivesAnotherRefusal(t *testing.T) {
	t.Parallel()
	other := "$JS.API.STREAM.INFO.KV_" + queue.BucketPresence
	url, _ := natsWithReader(t, "mde.offboard.request.>", "$KV.>", other)
	c := &cli{conn: queue.Conn{URL: url}, timeout: 5 * time.Second, stdout: io.Discard, stderr: io.Discard}
	if _, err := c.connect(t.Context()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.close)
	req := offboard.Subjects{}.Request("contoso", offboard.Bulk)
	key := campaign.Key("contoso", "wave")
	for _, subject := range []string{req, "$KV." + offboard.BucketControl + "." + key, other} {
		if err := c.nc.Publish(subject, nil); err != nil {
			t.Fatal(err)
		}
		if err := c.nc.FlushTimeout(5 * time.Second); err != nil {
			t.Fatal(err)
		}
	}
	if last := c.nc.LastError(); last == nil || !strings.Contains(last.Error(), other) {
		t.Fatalf("last error %v, want the refusal of %s", last, other)
	}
	// The refusals reach the connection's error handler a moment after
	// its last error is set; a publish's timeout is seconds later.
	deadline := time.Now().Add(2 * time.Second)
	for (!queue.PublishRefused(c.nc, req) || !control.WriteRefused(c.nc, key)) && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	if !queue.PublishRefused(c.nc, req) || !control.WriteRefused(c.nc, key) {
		t.Errorf("after a refusal of %s: publish of %s refused %v, write of %s refused %v; want both refused",
			other, req, queue.PublishRefused(c.nc, req), key, control.WriteRefused(c.nc, key))
	}
	normal := offboard.Subjects{}.Request("contoso", offboard.Normal)
	if queue.PublishRefused(c.nc, normal) || control.WriteRefused(c.nc, campaign.Key("contoso", "other")) {
		t.Errorf("a subject never published counts refused")
	}
}
