package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/contoso-secops/mde-offboard/internal/testwait"
	"github.com/contoso-secops/mde-offboard/offboard"
)

// A report that cannot be written at the end (its directory removed
// during the run, a full disk) is told in one line that says the same
// command writes it, and the summary still counts the rows: before, the
// run printed no summary, and an interrupted one wrote two lines, the
// first the interrupt alone.
func TestCampaignRunReportNotWritten(t *testing.T) {
	t.Parallel()
	url, js := natsWithStreams(t)
	ids := []string{strings.Repeat("a", 40), strings.Repeat("b", 40)}
	dir := t.TempDir()
	csv := writeFile(t, dir, "wave.csv", "machineId\n"+strings.Join(ids, "\n")+"\n")
	// run starts a run of the campaign name, and removes its report's
	// directory once both rows are published.
	run := func(ctx context.Context, name string) <-chan ran {
		t.Helper()
		reports := filepath.Join(dir, name)
		if err := os.Mkdir(reports, 0o700); err != nil {
			t.Fatal(err)
		}
		published := lastRequestSeq(t, js)
		done := runInBackground(ctx, "--nats-url", url, "campaign", "run", "--tenant", "contoso", "--name", name, "--csv", csv,
			"--report", filepath.Join(reports, "report.csv"))
		for deadline := time.Now().Add(time.Minute); lastRequestSeq(t, js) < published+2; time.Sleep(10 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("%s: the rows were not published in a minute", name)
			}
		}
		if err := os.RemoveAll(reports); err != nil {
			t.Fatal(err)
		}
		return done
	}
	answer := func(name string, row int) {
		id := fmt.Sprintf("%s-%06d", name, row)
		publishRaw(t, js, offboard.Subjects{}.Result("contoso"), "result:contoso:"+id,
			`{"requestId":"`+id+`","tenant":"contoso","machineId":"`+ids[row-1]+`","outcome":"created","attempt":1}`)
	}
	check := func(name string, got ran, wants ...string) {
		t.Helper()
		ok := got.code == exitFailed && strings.Count(strings.TrimSpace(got.err), "\n") == 0 &&
			strings.Contains(got.out, "campaign "+name+" (tenant contoso): 2 rows") && strings.Contains(got.out, "not written")
		for _, want := range wants {
			ok = ok && strings.Contains(got.err, want)
		}
		if !ok {
			t.Errorf("%s: exit %d, stdout %q, stderr %q", name, got.code, got.out, got.err)
		}
	}

	// Every row answered.
	done := run(t.Context(), "whole")
	answer("whole", 1)
	answer("whole", 2)
	check("whole", testwait.For(t, done, time.Minute, "the run"), "campaign whole: report", "run the same command again")

	// Interrupted, the rows still waiting.
	ctx, interrupt := context.WithCancelCause(t.Context())
	defer interrupt(nil)
	done = run(ctx, "cut")
	interrupt(errors.New("interrupt signal received"))
	check("cut", testwait.For(t, done, time.Minute, "the interrupted run"),
		"campaign cut: 2 rows without a result (interrupt signal received)", "report", "run the same command again")
}
