package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/contoso-secops/mde-offboard/offboard"
)

// A row answered as the other kind of run while the run waits ends the
// run, as a row answered for another device does: a real run's row
// answered dry_run, or a dry run's row answered created. The worker
// answers a request id from its ledger: a run under the name of an
// earlier run of the other kind whose results are no longer stored, or
// one started at the same time from another shell, is given that run's
// results. Taken as its own, a real run reported every row dry_run and
// exited 0, nothing offboarded; a dry run reported the real actions.
func TestRowAnsweredAsTheOtherKindOfRun(t *testing.T) {
	t.Parallel()
	url, js := natsWithStreams(t)
	a, b := strings.Repeat("a", 40), strings.Repeat("b", 40)
	for _, c := range []struct {
		name    string
		dryRun  bool
		outcome string
	}{
		{"real", false, offboard.OutcomeDryRun},
		{"rehearsal", true, offboard.OutcomeCreated},
		{"rehearsal-pending", true, offboard.OutcomeAlreadyPending},
	} {
		dir := t.TempDir()
		report := filepath.Join(dir, "report.csv")
		args := []string{"campaign", "run", "--tenant", "contoso", "--name", c.name, "--report", report, "--timeout", "30s",
			"--csv", writeFile(t, dir, "wave.csv", "machineId\n"+a+"\n"+b+"\n")}
		if c.dryRun {
			args = append(args, "--dry-run")
		}
		published := lastRequestSeq(t, js)
		done := ctlAsync(t, url, args...)
		if got := publishedOrEnded(t, js, published+2, done); got.ended {
			t.Fatalf("%s: the run ended before it published: exit %d, stdout %q, stderr %q", c.name, got.code, got.out, got.err)
		}
		answer := func(row int, device, outcome string) {
			publishRaw(t, js, offboard.Subjects{}.Result("contoso"), fmt.Sprintf("result:contoso:%s-%06d", c.name, row),
				fmt.Sprintf(`{"requestId":"%s-%06d","tenant":"contoso","machineId":"%s","outcome":"%s","attempt":1}`, c.name, row, device, outcome))
		}
		own := offboard.OutcomeCreated
		if c.dryRun {
			own = offboard.OutcomeDryRun
		}
		answer(2, b, own)
		answer(1, a, c.outcome)
		var got ctlExit
		select {
		case got = <-done:
		case <-time.After(time.Minute):
			t.Fatalf("%s: the run did not end", c.name)
		}
		if got.code != exitFailed || !strings.Contains(got.err, fmt.Sprintf("row 1 (%s-000001) was answered %s", c.name, c.outcome)) ||
			!strings.Contains(got.err, "new --name") || strings.Count(strings.TrimSpace(got.err), "\n") != 0 {
			t.Errorf("%s: exit %d, stdout %q, stderr %q", c.name, got.code, got.out, got.err)
		}
		body, err := os.ReadFile(report)
		if err != nil {
			t.Fatal(err)
		}
		if strings.Contains(string(body), ","+c.outcome+",") {
			t.Errorf("%s: the report gives row 1 the other run's result:\n%s", c.name, body)
		}
	}
}
