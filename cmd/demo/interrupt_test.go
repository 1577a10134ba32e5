package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"
)

// TestCampaignWaitEndsWithTheInterrupt: Ctrl-C while the campaign's
// results come in ends the wait at once with the interrupt, not with a
// claim that the results did not come within the minute it waits.
func TestCampaignWaitEndsWithTheInterrupt(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	c := &campaignResults{byID: nil}
	_, err := c.wait(ctx, 8, time.Minute)
	if !errors.Is(err, context.Canceled) {
		t.Errorf("wait after the interrupt: %v, want context.Canceled", err)
	}
	if err != nil && strings.Contains(err.Error(), "1m0s") {
		t.Errorf("wait after the interrupt says %q: it waited no minute", err)
	}
}

// TestInterruptedDemoSaysSo: a demo cut short by Ctrl-C or SIGTERM says
// it was interrupted, in one line, and exits 130 as a shell does after
// Ctrl-C; whatever step it was at ended with the context's error, which
// is not shown as the demo's failure.
func TestInterruptedDemoSaysSo(t *testing.T) {
	interrupted, cancel := context.WithCancel(context.Background())
	cancel()
	for _, err := range []error{context.Canceled, fmt.Errorf("bucket MDE_OFFBOARD_CONTROL: %w", context.Canceled), errors.New("2 of 8 campaign results")} {
		var stderr bytes.Buffer
		if got := exitStatus(interrupted, err, &stderr); got != 130 || stderr.String() != "demo: interrupted, stopped\n" {
			t.Errorf("interrupted with %v: exit %d, printed %q; want 130 and %q", err, got, stderr.String(), "demo: interrupted, stopped\n")
		}
	}
	var stderr bytes.Buffer
	if got := exitStatus(context.Background(), errors.New("only 3 of 51 results after 2m0s"), &stderr); got != 1 || stderr.String() != "demo: only 3 of 51 results after 2m0s\n" {
		t.Errorf("failed: exit %d, printed %q", got, stderr.String())
	}
	stderr.Reset()
	if got := exitStatus(interrupted, nil, &stderr); got != 0 || stderr.Len() != 0 {
		t.Errorf("DEMO_KEEP ended by Ctrl-C: exit %d, printed %q; want 0 and nothing", got, stderr.String())
	}
}
