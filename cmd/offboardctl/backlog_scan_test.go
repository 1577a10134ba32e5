package main

import (
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/contoso-secops/mde-offboard/offboard"
)

// TestCampaignRunScansTheBacklogBeforeItsTimeout: campaign run reads
// every waiting request of the tenant (otherRunWaiting) before it
// publishes; with a large backlog that takes longer than a short
// --timeout, which must then still let the rows be published and end as
// the usual resumable timeout, not as "context deadline exceeded" with
// nothing published.
func TestCampaignRunScansTheBacklogBeforeItsTimeout(t *testing.T) {
	t.Parallel()
	url, js := natsWithStreams(t)
	dir := t.TempDir()
	csv := writeFile(t, dir, "wave.csv", fmt.Sprintf("machineId\n%040x\n%040x\n%040x\n", 1, 2, 3))
	runOnce := func(name string) time.Duration {
		t.Helper()
		start := time.Now()
		code, _, errs := ctl(t, url, "campaign", "run", "--tenant", "contoso", "--csv", csv, "--name", name,
			"--report", filepath.Join(dir, name+".csv"), "--timeout", "1s")
		if code != exitFailed {
			t.Fatalf("exit %d: %s", code, errs)
		}
		return time.Since(start)
	}
	base := runOnce("wave-a")

	const backlog = 100_000
	for i := range backlog {
		m := nats.NewMsg("mde.offboard.request.contoso.bulk")
		m.Data = fmt.Appendf(nil, `{"requestId":"other-%06d","machineId":"%040x","source":"campaign:other","requestedBy":"alice","comment":"Retired in CMDB (CHG0012345) by the yearly clean-up of stale laptops"}`, i+1, i+1)
		m.Header.Set(jetstream.MsgIDHeader, fmt.Sprintf("contoso:other-%06d", i+1))
		if _, err := js.PublishMsgAsync(m); err != nil {
			t.Fatal(err)
		}
		if i%1000 == 999 { // a thousand acknowledgements outstanding at most
			select {
			case <-js.PublishAsyncComplete():
			case <-time.After(time.Minute):
				t.Fatal("publish")
			}
		}
	}
	lastSeq := func() uint64 { return lastRequestSeq(t, js) }
	before := lastSeq()
	start := time.Now()
	if err := campaignRequests(t.Context(), js, offboard.Subjects{}, "contoso", "wave-b", func(offboard.Priority, int, int, jetstream.Msg) {}); err != nil {
		t.Fatal(err)
	}
	scan := time.Since(start)
	// A timeout shorter than the scan, as long as half of it: the run's
	// own steps after the scan (following the results, publishing three
	// rows) slow down with the machine as the scan does. A fixed 500ms
	// ran out before the first row on a machine busy enough to make the
	// scan take 32s.
	timeout := max(500*time.Millisecond, scan/2).Round(time.Millisecond)
	t.Logf("run with no backlog: %v; campaignRequests over %d other requests: %v; --timeout %v", base, backlog, scan, timeout)
	code, _, errs := ctl(t, url, "campaign", "run", "--tenant", "contoso", "--csv", csv, "--name", "wave-b",
		"--report", filepath.Join(dir, "wave-b.csv"), "--timeout", timeout.String())
	if n := lastSeq() - before; n != 3 || !strings.Contains(errs, "run the same command again") {
		t.Errorf("with %d other requests waiting: exit %d, %d of 3 rows published, stderr %q; want the rows published and a resumable timeout", backlog, code, n, errs)
	}
}
