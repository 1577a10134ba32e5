package main

import (
	"bytes"
	"errors"
	"flag"
	"strings"
	"testing"

	"github.com/contoso-secops/mde-offboard/offboard"
)

// TestArgs: the demo takes no arguments; --help prints the usage, and
// anything else is one error (run prints it as one line and exits 2)
// before anything starts.
func TestArgs(t *testing.T) {
	var out bytes.Buffer
	if err := parseArgs(nil, &out); err != nil || out.Len() != 0 {
		t.Errorf("no arguments: %v, printed %q", err, out.String())
	}
	if err := parseArgs([]string{"--help"}, &out); !errors.Is(err, flag.ErrHelp) {
		t.Errorf("--help: %v", err)
	}
	if !strings.HasPrefix(out.String(), "Usage: demo") || !strings.Contains(out.String(), "DEMO_KEEP") {
		t.Errorf("--help printed %q", out.String())
	}
	for _, args := range [][]string{{"--keep"}, {"stray"}, {"--", "x"}} {
		out.Reset()
		err := parseArgs(args, &out)
		if err == nil || errors.Is(err, flag.ErrHelp) || strings.Contains(err.Error(), "\n") {
			t.Errorf("%q: error %v, want one line", args, err)
		}
		if out.Len() != 0 {
			t.Errorf("%q: printed %q", args, out.String())
		}
	}
}

// TestAmbiguousResultShowsItsCandidates: an ambiguous_machine result
// lists the devices sharing the name under its row, as the README says
// the demo shows them; its message alone is cut before they could show.
func TestAmbiguousResultShowsItsCandidates(t *testing.T) {
	var out bytes.Buffer
	table := newResultTable(&out, nil)
	table.add(offboard.Result{
		RequestID: "contoso-byname-0003", Tenant: "contoso", Outcome: offboard.OutcomeFailed,
		Error: &offboard.ResultError{
			Code:    offboard.CodeAmbiguousMachine,
			Message: `2 devices are named "pc-0003.contoso.local"; give the machineId of the one to offboard`,
			Candidates: []offboard.Candidate{
				{MachineID: "0000000000000000000000000000000000000003", LastSeen: "2026-12-04T21:18:14Z", HealthStatus: "Active"},
				{MachineID: "000000000000000000000000000000000000001f", LastSeen: "2026-11-30T08:00:00Z", HealthStatus: "Inactive"},
			},
		},
	})
	lines := strings.Split(strings.TrimSuffix(out.String(), "\n"), "\n")
	if len(lines) != 4 { // header, row, two candidates
		t.Fatalf("printed %d lines, want 4:\n%s", len(lines), out.String())
	}
	for i, want := range []string{"…000000000003  candidate, lastSeen 2026-12-04T21:18:14Z, healthStatus Active", "…00000000001f  candidate, lastSeen 2026-11-30T08:00:00Z, healthStatus Inactive"} {
		if !strings.Contains(lines[2+i], want) {
			t.Errorf("candidate line %d is %q, want it to hold %q", i+1, lines[2+i], want)
		}
	}
}
